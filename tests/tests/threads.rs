//! Multi-threaded invoke: every thread count gives the single-threaded output byte for byte
//! (and the reference kernels' output), on a whole network whose convolutions are large enough
//! to be split.

use kdruntime::kernels::simd::{Kernels, MIN_PARALLEL_MACS};
use kdruntime::{Interpreter, Model};
use kdtests::nets;

fn run(model: &Model, input: &[u8], kernels: Kernels, threads: usize) -> Vec<u8> {
    let mut arena = vec![0u8; model.arena_size_for(kernels).unwrap()];
    let mut interp = Interpreter::with_kernels(model, &mut arena, kernels).unwrap();
    interp.set_threads(threads);
    assert_eq!(interp.threads(), threads.max(1));
    interp.input_mut(0).unwrap().copy_from_slice(input);
    interp.invoke().unwrap();
    interp.output(0).unwrap().to_vec()
}

// The stem alone (64x64x32 outputs of a 3x3x3 filter) is above the split threshold.
const _: () = assert!(64 * 64 * 32 * 27 >= MIN_PARALLEL_MACS);

#[test]
fn every_thread_count_gives_the_same_bytes() {
    let net = nets::mobilenet_v2(1.0, 128, 1000, 1);
    let model = Model::from_bytes(&net.model).unwrap();
    let want = run(&model, &net.input, Kernels::Reference, 1);
    for kernels in [Kernels::Fastest, Kernels::Avx2] {
        for threads in [0, 1, 2, 3, 7] {
            let got = run(&model, &net.input, kernels, threads);
            assert_eq!(got, want, "{kernels:?}, {threads} threads");
        }
    }
}
