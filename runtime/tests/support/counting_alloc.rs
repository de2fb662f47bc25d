//! A global allocator that counts allocations (and reallocations) while a gate says so; shared
//! by the no-allocation tests (`runtime/tests/no_alloc.rs`, `tests/tests/threads_no_alloc.rs`),
//! which include this file with `#[path]`. `counting_allocator!(gate)` installs it:
//! `gate: fn() -> bool` decides, on the allocating thread, whether an allocation counts.

/// Allocations counted so far.
pub static ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Installs the counting allocator with `gate`.
#[macro_export]
macro_rules! counting_allocator {
    ($gate:expr) => {
        struct Counting;

        fn count() {
            let gate: fn() -> bool = $gate;
            if gate() {
                counting_alloc::ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }

        unsafe impl std::alloc::GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
                count();
                unsafe { std::alloc::System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
                unsafe { std::alloc::System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(
                &self,
                ptr: *mut u8,
                layout: std::alloc::Layout,
                new_size: usize,
            ) -> *mut u8 {
                count();
                unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    };
}
