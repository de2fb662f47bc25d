//! A multi-threaded invoke allocates nothing on any thread: the workers start in
//! `set_threads`, and handing them parts of an operator takes no heap. This binary has no
//! libtest harness, so nothing else runs while every allocation in the process is counted.

use std::sync::atomic::{AtomicBool, Ordering};

use kdruntime::kernels::simd::{Kernels, MIN_PARALLEL_MACS};
use kdruntime::{Interpreter, Model};
use kdtests::nets;

#[path = "../../runtime/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::ALLOCATIONS;

static COUNTING: AtomicBool = AtomicBool::new(false);

counting_allocator!(|| COUNTING.load(Ordering::SeqCst));

// The stem (48x48x16 outputs of a 3x3x3 filter) is large enough to be split.
const _: () = assert!(48 * 48 * 16 * 27 >= MIN_PARALLEL_MACS);

/// Allocations in the whole process while `f` runs.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

fn main() {
    // The gate works: an allocation inside the window is counted.
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![0u8; 64]))), 1);
    let net = nets::mobilenet_v2(0.35, 96, 1000, 1);
    let model = Model::from_bytes(&net.model).unwrap();
    for kernels in [Kernels::Avx2, Kernels::Fastest] {
        let mut arena = vec![0u8; model.arena_size_for(kernels).unwrap()];
        let mut interp = Interpreter::with_kernels(&model, &mut arena, kernels).unwrap();
        interp.set_threads(2);
        assert_eq!(interp.threads(), 2);
        for pause_ms in [0, 5] {
            // After 5 ms the workers have parked: waking them must not allocate either.
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            let n = allocations(|| {
                interp.input_mut(0).unwrap().copy_from_slice(&net.input);
                interp.invoke().unwrap();
            });
            assert_eq!(
                n, 0,
                "{kernels:?}, 2 threads: {n} allocations during invoke"
            );
        }
        println!("threads_no_alloc: {kernels:?}, 2 threads: no allocation during invoke");
    }
}
