//! Multi-threaded invoke: every thread count gives the single-threaded output byte for byte
//! (and the reference kernels' output), on a whole network whose convolutions are large enough
//! to be split.

use kdruntime::kernels::simd::{Kernels, MIN_PARALLEL_MACS};
use kdruntime::workers::Workers;
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

#[test]
fn one_interpreter_keeps_its_bytes_as_threads_change_and_workers_park() {
    let net = nets::mobilenet_v2(0.35, 96, 1000, 1);
    let model = Model::from_bytes(&net.model).unwrap();
    let want = run(&model, &net.input, Kernels::Reference, 1);
    let mut arena = vec![0u8; model.arena_size_for(Kernels::Fastest).unwrap()];
    let mut interp = Interpreter::with_kernels(&model, &mut arena, Kernels::Fastest).unwrap();
    for threads in [2, 2, 4, 1, 3, 2] {
        interp.set_threads(threads);
        assert_eq!(interp.threads(), threads);
        for pause_ms in [0, 5] {
            // 5 ms: longer than the workers spin, so the next invoke wakes parked workers.
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            interp.input_mut(0).unwrap().copy_from_slice(&net.input);
            interp.invoke().unwrap();
            assert_eq!(interp.output(0).unwrap(), want, "{threads} threads");
        }
    }
}

#[test]
fn workers_run_every_part_once_and_report_failures() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = Workers::new(3);
    assert_eq!(workers.threads(), 3);
    for parts in [0, 1, 2, 3, 5] {
        let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
        assert!(workers.run(parts, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
            true
        }));
        assert!(
            hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
            "{parts} parts"
        );
    }
    // A part that fails, or panics on a worker or on the caller, makes the whole run false;
    // the pool still serves the next job.
    for bad in 0..3 {
        assert!(!workers.run(3, &|i| i != bad), "part {bad} false");
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let ran = workers.run(3, &|i| {
            assert_ne!(i, bad, "part {bad} panics");
            true
        });
        std::panic::set_hook(quiet);
        assert!(!ran, "part {bad} panicked");
        assert!(workers.run(3, &|_| true));
    }
    // Two callers at once: the second runs its parts alone, both complete.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..200 {
                    let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
                    assert!(workers.run(3, &|i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                        true
                    }));
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                }
            });
        }
    });
}
