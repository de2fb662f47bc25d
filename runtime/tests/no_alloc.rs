//! `Interpreter::new`, `input_mut`, `invoke` and `output` must not touch the heap: a counting
//! global allocator sees zero allocations between model load and the output read, on every
//! kernel family (reference, AVX2, the fastest this CPU has).
//! Only allocations made by the test's own thread count: libtest's main thread does its
//! bookkeeping (the running-test map, the timeout queue, the result channel) while the test
//! thread runs, and on a loaded machine that overlaps the measured window.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use kdruntime::kernels::simd::Kernels;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

thread_local! {
    /// Set on the test thread only; a const initialiser, so reading it never allocates.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

counting_allocator!(|| COUNTED.try_with(Cell::get).unwrap_or(false));

#[test]
fn init_and_invoke_allocate_nothing() {
    COUNTED.set(true);
    // The gate works: an allocation on this thread is counted.
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    drop(std::hint::black_box(vec![0u8; 64]));
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 1);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    // The pipeline runs the core kernels; the conv and FC fixtures add per-channel blobs;
    // nets/all_ops uses every operator the interpreter runs (20 of them, LOGISTIC's table in
    // its op record, the depthwise multipliers in op blobs, a 3-input CONCATENATION) except
    // SHAPE, STRIDED_SLICE and PACK, which the model writer cannot emit yet (they run in
    // kdtests' tf_converter_parity on converter-made models).
    for name in [
        "core/pipeline_u8_classifier",
        "core/conv_same_s2_pc_relu6",
        "core/fc_pc_bias_relu",
        "core/mean_lastaxis_same",
        "nets/all_ops",
    ] {
        let bytes = std::fs::read(format!("{dir}{name}.tflite")).unwrap();
        let input = vec![7u8; 1 << 16];
        let model = kdruntime::Model::from_bytes(&bytes).unwrap();
        for kernels in [Kernels::Reference, Kernels::Avx2, Kernels::Fastest] {
            let mut arena = vec![0u8; model.arena_size_for(kernels).unwrap()];
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            let checksum = {
                let mut interp =
                    kdruntime::Interpreter::with_kernels(&model, &mut arena, kernels).unwrap();
                let dst = interp.input_mut(0).unwrap();
                let n = dst.len();
                dst.copy_from_slice(&input[..n]);
                interp.invoke().unwrap();
                interp.invoke().unwrap();
                interp
                    .output(0)
                    .unwrap()
                    .iter()
                    .map(|&b| b as u64)
                    .sum::<u64>()
            };
            let after = ALLOCATIONS.load(Ordering::SeqCst);
            assert_eq!(
                after - before,
                0,
                "{name} ({kernels:?}): {} allocations during init/invoke",
                after - before
            );
            // Use the result so the work cannot be optimised away.
            assert!(checksum < u64::MAX);
        }
        if name == "nets/all_ops" {
            let mut codes: Vec<i32> = model.operators().map(|o| o.unwrap().opcode).collect();
            codes.sort_unstable();
            codes.dedup();
            assert_eq!(
                codes.len(),
                20,
                "all_ops covers every wired operator: {codes:?}"
            );
        }
    }
}
