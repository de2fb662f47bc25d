//! Worker threads of a multi-threaded invoke (std builds).
//!
//! [`Workers`] starts its threads once (`Interpreter::set_threads`) and hands them one job per
//! large operator: `job(part)` for every part but the caller's own. Between jobs a worker
//! spins for a while before it parks, because the operators of one invoke follow each other
//! within microseconds and a wake-up through the OS costs tens of microseconds on a VM, as much
//! as a whole small convolution (threads spawned per operator made two threads slower than one).
//! Handing out a job allocates nothing.
//!
//! Without std there are no threads: `Workers` is then a type with no values, so the
//! interpreter's `Option<Workers>` is always `None`.

#[cfg(feature = "std")]
pub use hosted::Workers;

/// No worker threads without std (this type has no values).
#[cfg(not(feature = "std"))]
#[derive(Debug)]
pub enum Workers {}

#[cfg(not(feature = "std"))]
impl Workers {
    /// Never called: there is no `Workers` value without std.
    pub fn threads(&self) -> usize {
        match *self {}
    }

    /// Never called: there is no `Workers` value without std.
    pub fn run(&self, _parts: usize, _job: &(dyn Fn(usize) -> bool + Sync)) -> bool {
        match *self {}
    }
}

#[cfg(feature = "std")]
mod hosted {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    /// How long an idle worker spins before it parks.
    const SPIN: Duration = Duration::from_millis(2);

    /// A job as the workers see it: the address of a `&(dyn Fn(usize) -> bool + Sync)` on the
    /// stack of the thread in [`Workers::run`], which waits until every worker is done with it.
    type JobRef<'a> = &'a (dyn Fn(usize) -> bool + Sync);

    /// State the caller and the workers share.
    #[derive(Default)]
    struct Shared {
        /// Bumped after a job is published (or to stop); each worker waits for a new value.
        epoch: AtomicU64,
        /// The current job (a `*const JobRef`), valid while `left` is above zero.
        job: AtomicPtr<()>,
        /// Parts of the current job (workers numbered from there on have none).
        parts: AtomicUsize,
        /// Workers not yet finished with the current job.
        left: AtomicUsize,
        /// False once a worker's part has failed or panicked.
        ok: AtomicBool,
        /// Set when the pool is dropped.
        stop: AtomicBool,
        /// Workers that have started (their thread set up) and wait for jobs.
        ready: AtomicUsize,
        /// Taken by the thread inside [`Workers::run`]; a second caller runs its parts alone.
        busy: AtomicBool,
    }

    /// A pool of `threads - 1` worker threads; the thread calling [`Workers::run`] is the last.
    #[derive(Debug)]
    pub struct Workers {
        shared: Arc<Shared>,
        handles: Vec<JoinHandle<()>>,
    }

    impl core::fmt::Debug for Shared {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("Shared")
        }
    }

    impl Workers {
        /// Starts `threads - 1` workers. Where the OS refuses a thread, the pool keeps those
        /// it has ([`Workers::threads`] says how many run, the caller included).
        pub fn new(threads: usize) -> Self {
            let shared = Arc::new(Shared::default());
            let handles = (1..threads)
                .map_while(|part| {
                    let shared = Arc::clone(&shared);
                    thread::Builder::new()
                        .name(format!("kdruntime-{part}"))
                        .spawn(move || work(&shared, part))
                        .ok()
                })
                .collect::<Vec<_>>();
            // A thread sets itself up (thread-locals, its handle) when it first runs; waiting
            // here keeps those allocations out of the first invoke.
            while shared.ready.load(Ordering::Acquire) < handles.len() {
                thread::yield_now();
            }
            Self { shared, handles }
        }

        /// Threads a job runs on, the caller's included.
        pub fn threads(&self) -> usize {
            self.handles.len() + 1
        }

        /// Runs `job(0)` .. `job(parts - 1)`: part 0 on the calling thread, part `i` on worker
        /// `i` (parts past the workers, and every part while another thread is inside `run`,
        /// on the calling thread). Returns when all have finished: true when every part
        /// returned true; false when one returned false or panicked (the caller then computes
        /// the whole output again, so parts after it on the same thread may be skipped).
        pub fn run(&self, parts: usize, job: &(dyn Fn(usize) -> bool + Sync)) -> bool {
            let s = &*self.shared;
            let helpers = parts.saturating_sub(1).min(self.handles.len());
            if helpers == 0 || s.busy.swap(true, Ordering::Acquire) {
                return (0..parts)
                    .all(|i| catch_unwind(AssertUnwindSafe(|| job(i))).unwrap_or(false));
            }
            let job_ref: JobRef = job;
            s.ok.store(true, Ordering::Relaxed);
            s.parts.store(parts, Ordering::Relaxed);
            s.left.store(self.handles.len(), Ordering::Relaxed);
            s.job
                .store(&job_ref as *const JobRef as *mut (), Ordering::Relaxed);
            s.epoch.fetch_add(1, Ordering::Release);
            for h in &self.handles {
                h.thread().unpark();
            }
            let mut ok = catch_unwind(AssertUnwindSafe(|| job(0))).unwrap_or(false);
            for i in self.handles.len() + 1..parts {
                ok &= catch_unwind(AssertUnwindSafe(|| job(i))).unwrap_or(false);
            }
            // `job_ref` must outlive every worker's use of it.
            while s.left.load(Ordering::Acquire) != 0 {
                core::hint::spin_loop();
            }
            s.busy.store(false, Ordering::Release);
            ok && s.ok.load(Ordering::Relaxed)
        }
    }

    impl Drop for Workers {
        fn drop(&mut self) {
            self.shared.stop.store(true, Ordering::Release);
            self.shared.epoch.fetch_add(1, Ordering::Release);
            for h in self.handles.drain(..) {
                h.thread().unpark();
                let _ = h.join();
            }
        }
    }

    /// Worker `part`'s loop: wait for a new epoch, run its part of the job, report.
    fn work(s: &Shared, part: usize) {
        let _ = thread::current(); // set up what `park` needs now, not in a job
        s.ready.fetch_add(1, Ordering::Release);
        let mut seen = 0;
        loop {
            let idle = Instant::now();
            let mut spins = 0u32;
            loop {
                let epoch = s.epoch.load(Ordering::Acquire);
                if epoch != seen {
                    seen = epoch;
                    break;
                }
                spins = spins.wrapping_add(1);
                if !spins.is_multiple_of(1024) || idle.elapsed() < SPIN {
                    core::hint::spin_loop();
                } else {
                    // Woken by the next job's unpark (or spuriously: the loop checks again).
                    thread::park();
                }
            }
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            if part < s.parts.load(Ordering::Relaxed) {
                let job = s.job.load(Ordering::Relaxed) as *const JobRef;
                // SAFETY: `run` published `job` before the epoch this worker acquired and
                // waits for `left` to reach zero before the closure goes out of scope.
                let job: JobRef = unsafe { *job };
                if !catch_unwind(AssertUnwindSafe(|| job(part))).unwrap_or(false) {
                    s.ok.store(false, Ordering::Relaxed);
                }
            }
            s.left.fetch_sub(1, Ordering::Release);
        }
    }
}
