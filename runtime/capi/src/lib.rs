//! C ABI of kdruntime: `libkdruntime.a` / `libkdruntime.so` and `include/kdruntime.h`.
//!
//! A thin shell over the `kdruntime` crate. Nothing here allocates: the interpreter handle lives
//! in caller memory ([`kd_interpreter`]), the model bytes and the arena are caller buffers, and
//! error messages are copied into caller buffers.
//!
//! Robustness rules, kept by every function:
//! * null pointers, misaligned or uninitialised handles, out-of-range indices and bad lengths
//!   return a [`kd_status`] error; nothing is dereferenced before it is checked;
//! * no panic crosses the boundary: each body runs under `std::panic::catch_unwind` and a caught
//!   panic becomes [`kd_status::KD_STATUS_INTERNAL_ERROR`] (kdruntime itself is written not to
//!   panic on any input; this is the last line of defence). Built with `panic = "abort"`, a
//!   panic would abort the process instead of unwinding, which is equally never undefined.
//!
//! Without the default `std` feature the library is `no_std` for bare-metal targets (the
//! Cortex-M firmware in `firmware/`): it must be built with `panic = "abort"`, and its panic
//! handler traps (a `udf` instruction on Arm), since there is no unwinding to catch.
//!
//! The header is generated from this file by cbindgen (`make header`); a test fails when the
//! checked-in header is stale, another parses it with libclang and compares it with these types.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
// The exported names follow C conventions (`kd_status`, `KD_STATUS_OK`).
#![allow(non_camel_case_types)]

use core::ffi::c_char;
use core::fmt::{self, Write as _};
use core::mem::{align_of, size_of};
use core::ptr;
#[cfg(feature = "std")]
use std::panic::{catch_unwind, AssertUnwindSafe};

use kdrt::letterbox::{self as lb, Image, LetterboxError, OutputFormat, PixelFormat};
use kdrt::{DType, Error, Interpreter, Model};

#[cfg(test)]
mod abi_check;
#[cfg(test)]
mod api_tests;

/// Highest tensor rank kdruntime handles (the length of `kd_tensor_info.dims`).
pub const KD_MAX_RANK: usize = 6;
/// Number of 64-bit words in `kd_interpreter`.
pub const KD_INTERPRETER_WORDS: usize = 128;

/// Status of every fallible call. `KD_STATUS_OK` is 0; the others are errors.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kd_status {
    /// Success.
    KD_STATUS_OK = 0,
    /// A required pointer argument is null.
    KD_STATUS_NULL_POINTER = 1,
    /// An argument is out of range (a length above `PTRDIFF_MAX`, an unknown enum value, a
    /// buffer of the wrong size, a tensor of a shape or type the call cannot handle).
    KD_STATUS_INVALID_ARGUMENT = 2,
    /// The handle pointer is not aligned to `_Alignof(kd_interpreter)`.
    KD_STATUS_MISALIGNED = 3,
    /// The handle was never passed to `kd_interpreter_init`, or its init failed.
    KD_STATUS_NOT_INITIALIZED = 4,
    /// The model flatbuffer is malformed.
    KD_STATUS_MALFORMED_MODEL = 5,
    /// The model is well-formed but outside what kdruntime runs.
    KD_STATUS_UNSUPPORTED_MODEL = 6,
    /// A tensor's description is invalid.
    KD_STATUS_BAD_TENSOR = 7,
    /// The model uses an operator kdruntime does not implement.
    KD_STATUS_UNSUPPORTED_OPERATOR = 8,
    /// An operator's tensors or options are invalid for its kernel.
    KD_STATUS_INVALID_OPERATOR = 9,
    /// The arena is smaller than `kd_model_arena_size` says.
    KD_STATUS_ARENA_TOO_SMALL = 10,
    /// The model has more tensors than the planner handles.
    KD_STATUS_TOO_MANY_TENSORS = 11,
    /// An input, output or tensor index is out of range.
    KD_STATUS_INDEX_OUT_OF_RANGE = 12,
    /// The letterbox rejected the image (zero or huge size, short buffer, small stride).
    KD_STATUS_BAD_IMAGE = 13,
    /// A bug: kdruntime panicked and the panic was caught at the boundary.
    KD_STATUS_INTERNAL_ERROR = 14,
}

/// Element type of a tensor; the values are TFLite's `TensorType` numbers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kd_dtype {
    /// `float32`
    KD_DTYPE_FLOAT32 = 0,
    /// `float16`
    KD_DTYPE_FLOAT16 = 1,
    /// `int32`
    KD_DTYPE_INT32 = 2,
    /// `uint8`
    KD_DTYPE_UINT8 = 3,
    /// `int64`
    KD_DTYPE_INT64 = 4,
    /// `bool` (one byte)
    KD_DTYPE_BOOL = 6,
    /// `int16`
    KD_DTYPE_INT16 = 7,
    /// `int8`
    KD_DTYPE_INT8 = 9,
}

/// Layout of source pixels given to the letterbox functions (passed as `int32_t` so that any
/// value is safe to pass; unknown values give `KD_STATUS_INVALID_ARGUMENT`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kd_pixel_format {
    /// 3 bytes per pixel: red, green, blue.
    KD_PIXEL_RGB = 0,
    /// 3 bytes per pixel: blue, green, red.
    KD_PIXEL_BGR = 1,
    /// 4 bytes per pixel: red, green, blue, alpha (ignored).
    KD_PIXEL_RGBA = 2,
    /// 4 bytes per pixel: blue, green, red, alpha (ignored).
    KD_PIXEL_BGRA = 3,
    /// 1 byte per pixel: grey level.
    KD_PIXEL_GRAY = 4,
}

/// Opaque interpreter handle, stored in caller memory (static, stack or heap).
///
/// Initialise it with `kd_interpreter_init` before any other call (a handle that was never
/// initialised must not be passed to other functions; a zero-filled one is detected and
/// rejected with `KD_STATUS_NOT_INITIALIZED`). It borrows the model bytes and the arena given
/// to `kd_interpreter_init`, which must stay valid and unmoved, and must not be written by the
/// caller (except through `kd_input_data` and `kd_letterbox`), for as long as the handle is
/// used. It owns nothing else unless `kd_set_threads` started worker threads: then
/// `kd_interpreter_deinit` (or `kd_set_threads(h, 1)`) stops them before the storage is freed
/// or re-initialised. Without threads no destroy call is needed, and it may be re-initialised. It must not
/// be copied with memcpy and used from the copy while the original is also used, and it is
/// not thread-safe: use one handle from one thread at a time (distinct handles are independent).
/// (`uint64_t` words give it the alignment of the Rust state on every target; a compile-time
/// check in the library enforces that they hold it.)
#[repr(C)]
pub struct kd_interpreter {
    /// Storage for the Rust state; never read it.
    pub opaque: [u64; KD_INTERPRETER_WORDS],
}

/// Description of one graph input or output tensor.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct kd_tensor_info {
    /// Index of the tensor in the model's subgraph 0.
    pub tensor_index: usize,
    /// Element type.
    pub dtype: kd_dtype,
    /// Number of dimensions (at most `KD_MAX_RANK`).
    pub rank: u32,
    /// Dimensions; entries at and after `rank` are 0.
    pub dims: [i32; KD_MAX_RANK],
    /// Per-tensor quantisation scale (0 when the tensor is not quantised).
    pub scale: f32,
    /// Per-tensor quantisation zero point.
    pub zero_point: i64,
    /// Number of quantisation scales: 0 (float), 1 (per-tensor) or more (per-channel).
    pub num_scales: usize,
    /// Size of the tensor's data in bytes.
    pub byte_size: usize,
}

/// Geometry the letterbox used: the source was scaled by `scale_num / scale_den` to
/// `new_height x new_width` and pasted at (`top`, `left`) on a black canvas.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct kd_letterbox_info {
    /// Numerator of the exact scale.
    pub scale_num: usize,
    /// Denominator of the exact scale.
    pub scale_den: usize,
    /// Height of the resized image.
    pub new_height: usize,
    /// Width of the resized image.
    pub new_width: usize,
    /// Black rows above the image.
    pub top: usize,
    /// Black columns left of the image.
    pub left: usize,
}

/// Normalisation applied before quantising letterboxed pixels into an int8 input tensor:
/// `q = clamp(round(((pixel - mean) / std) / scale) + zero_point, -128, 127)` in float32,
/// rounding halves away from zero (as `kdrun run` does). uint8 inputs take the pixels as is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct kd_normalization {
    /// Subtracted from each pixel value (0..255).
    pub mean: f32,
    /// Divides the centred value; finite and non-zero.
    pub std: f32,
}

/// The normalisation used when `kd_letterbox` gets NULL: mean 127, std 128 (kdrun's default).
const DEFAULT_NORMALIZATION: kd_normalization = kd_normalization {
    mean: 127.0,
    std: 128.0,
};

/// Marks a handle whose init succeeded.
const MAGIC_READY: u64 = 0x6b64_7274_5245_4144; // "kdrtREAD"
/// Marks a handle whose init failed (only `kd_interpreter_last_error` works on it).
const MAGIC_FAILED: u64 = 0x6b64_7274_4641_494c; // "kdrtFAIL"

/// The last error recorded on a handle, kept by value so no heap is needed.
#[derive(Clone, Copy, Debug)]
enum LastError {
    None,
    Runtime(Error),
    Letterbox(LetterboxError),
    Argument(&'static str),
    /// A required out-pointer was NULL (status `KD_STATUS_NULL_POINTER`).
    Null(&'static str),
}

impl fmt::Display for LastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastError::None => Ok(()),
            LastError::Runtime(e) => e.fmt(f),
            LastError::Letterbox(e) => e.fmt(f),
            LastError::Argument(s) => f.write_str(s),
            LastError::Null(s) => write!(f, "{s} is NULL"),
        }
    }
}

/// What a [`kd_interpreter`] holds.
///
/// The lifetimes are `'static` only nominally: the model bytes and the arena belong to the
/// caller, who promises (see `kd_interpreter`'s documentation) to keep them valid while the
/// handle is used. Nothing here has a destructor, so overwriting a handle leaks nothing.
struct Handle {
    magic: u64,
    interp: Option<Interpreter<'static, 'static>>,
    last_error: LastError,
}

// The handle type in the header must hold a `Handle`.
const _: () = assert!(size_of::<Handle>() <= size_of::<kd_interpreter>());
const _: () = assert!(align_of::<Handle>() <= align_of::<kd_interpreter>());
const _: () = assert!(KD_MAX_RANK == kdrt::model::MAX_RANK);

/// Status for a kdruntime error.
fn status_of(e: &Error) -> kd_status {
    match e {
        Error::Malformed { .. } => kd_status::KD_STATUS_MALFORMED_MODEL,
        Error::UnsupportedModel { .. } => kd_status::KD_STATUS_UNSUPPORTED_MODEL,
        Error::BadTensor { .. } => kd_status::KD_STATUS_BAD_TENSOR,
        Error::UnsupportedOperator { .. } => kd_status::KD_STATUS_UNSUPPORTED_OPERATOR,
        Error::InvalidOperator { .. } | Error::InvalidOperand { .. } => {
            kd_status::KD_STATUS_INVALID_OPERATOR
        }
        Error::ArenaTooSmall { .. } => kd_status::KD_STATUS_ARENA_TOO_SMALL,
        Error::TooManyTensors { .. } => kd_status::KD_STATUS_TOO_MANY_TENSORS,
        Error::IndexOutOfRange { .. } => kd_status::KD_STATUS_INDEX_OUT_OF_RANGE,
    }
}

/// Runs `f`, turning a panic into `KD_STATUS_INTERNAL_ERROR`.
fn guard(f: impl FnOnce() -> kd_status) -> kd_status {
    guard_or(kd_status::KD_STATUS_INTERNAL_ERROR, f)
}

/// Runs `f`, turning a panic into `fallback`.
#[cfg(feature = "std")]
fn guard_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Runs `f`: without std a panic cannot be caught (the panic handler below traps instead).
#[cfg(not(feature = "std"))]
fn guard_or<T>(_fallback: T, f: impl FnOnce() -> T) -> T {
    f()
}

/// The bare-metal panic handler: kdruntime is written not to panic on any input, so reaching
/// this is a bug; trap at once (no message, so no formatting code is linked). On Arm the
/// permanently undefined instruction raises a fault the firmware's fault handler reports.
#[cfg(all(not(feature = "std"), not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        #[cfg(any(target_arch = "arm", target_arch = "aarch64"))]
        // SAFETY: `udf` only raises an undefined-instruction exception.
        unsafe {
            core::arch::asm!("udf #0", options(noreturn, nomem, nostack))
        };
        #[cfg(not(any(target_arch = "arm", target_arch = "aarch64")))]
        core::hint::spin_loop();
    }
}

/// Largest length a Rust slice may have.
const MAX_LEN: usize = isize::MAX as usize;

/// Borrows `len` bytes at `p` after checking the pointer and the length.
///
/// # Safety
/// When `p` is non-null it must point to `len` readable bytes that stay valid for `'s`.
unsafe fn bytes<'s>(p: *const u8, len: usize) -> Result<&'s [u8], kd_status> {
    if p.is_null() {
        return Err(kd_status::KD_STATUS_NULL_POINTER);
    }
    if len > MAX_LEN {
        return Err(kd_status::KD_STATUS_INVALID_ARGUMENT);
    }
    // SAFETY: non-null, length within isize::MAX, validity promised by the caller.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// Mutable variant of [`bytes`].
///
/// # Safety
/// As [`bytes`], and the bytes must not be accessed otherwise during `'s`.
unsafe fn bytes_mut<'s>(p: *mut u8, len: usize) -> Result<&'s mut [u8], kd_status> {
    if p.is_null() {
        return Err(kd_status::KD_STATUS_NULL_POINTER);
    }
    if len > MAX_LEN {
        return Err(kd_status::KD_STATUS_INVALID_ARGUMENT);
    }
    // SAFETY: as above.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, len) })
}

/// Checks a handle pointer's nullness and alignment.
fn check_ptr(h: *const kd_interpreter) -> Result<(), kd_status> {
    if h.is_null() {
        return Err(kd_status::KD_STATUS_NULL_POINTER);
    }
    if !(h as usize).is_multiple_of(align_of::<kd_interpreter>()) {
        return Err(kd_status::KD_STATUS_MISALIGNED);
    }
    Ok(())
}

/// The handle behind `h` in any initialised state (ready or failed).
///
/// # Safety
/// `h`, when non-null and aligned, must point to a `kd_interpreter` that was initialised or
/// zero-filled, and not be accessed otherwise during `'h`.
unsafe fn handle_any<'h>(h: *mut kd_interpreter) -> Result<&'h mut Handle, kd_status> {
    check_ptr(h)?;
    let p = h.cast::<Handle>();
    // SAFETY: aligned and large enough (checked at compile time); the magic word is read
    // first so that a zero-filled handle is never interpreted as a `Handle`.
    let magic = unsafe { ptr::addr_of!((*p).magic).read() };
    if magic != MAGIC_READY && magic != MAGIC_FAILED {
        return Err(kd_status::KD_STATUS_NOT_INITIALIZED);
    }
    // SAFETY: the magic says kd_interpreter_init wrote a whole `Handle` here.
    Ok(unsafe { &mut *p })
}

/// Runs `f` on the interpreter of a ready handle; records the error it returns.
///
/// # Safety
/// As [`handle_any`].
unsafe fn with_interp(
    h: *mut kd_interpreter,
    f: impl FnOnce(&mut Interpreter<'static, 'static>) -> Result<(), LastError>,
) -> kd_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let handle = match unsafe { handle_any(h) } {
            Ok(x) => x,
            Err(s) => return s,
        };
        let Some(interp) = handle.interp.as_mut() else {
            return kd_status::KD_STATUS_NOT_INITIALIZED;
        };
        match f(interp) {
            Ok(()) => {
                handle.last_error = LastError::None;
                kd_status::KD_STATUS_OK
            }
            Err(e) => {
                let status = match &e {
                    LastError::None => kd_status::KD_STATUS_OK,
                    LastError::Runtime(e) => status_of(e),
                    LastError::Letterbox(_) => kd_status::KD_STATUS_BAD_IMAGE,
                    LastError::Argument(_) => kd_status::KD_STATUS_INVALID_ARGUMENT,
                    LastError::Null(_) => kd_status::KD_STATUS_NULL_POINTER,
                };
                handle.last_error = e;
                status
            }
        }
    })
}

/// Size in bytes of `kd_interpreter` (equal to `sizeof(kd_interpreter)`).
#[no_mangle]
pub extern "C" fn kd_interpreter_size() -> usize {
    size_of::<kd_interpreter>()
}

/// Alignment in bytes of `kd_interpreter` (equal to `_Alignof(kd_interpreter)`).
#[no_mangle]
pub extern "C" fn kd_interpreter_align() -> usize {
    align_of::<kd_interpreter>()
}

/// A static, NUL-terminated description of `status`; any value is accepted ("unknown status"
/// for values that are not a `kd_status`). Never NULL.
#[no_mangle]
pub extern "C" fn kd_status_string(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"ok\0",
        1 => b"null pointer argument\0",
        2 => b"invalid argument\0",
        3 => b"misaligned interpreter handle\0",
        4 => b"interpreter handle not initialised\0",
        5 => b"malformed model\0",
        6 => b"unsupported model\0",
        7 => b"invalid tensor in model\0",
        8 => b"unsupported operator\0",
        9 => b"invalid operator\0",
        10 => b"arena too small\0",
        11 => b"too many tensors\0",
        12 => b"index out of range\0",
        13 => b"invalid image for letterbox\0",
        14 => b"internal error (caught panic)\0",
        _ => b"unknown status\0",
    };
    s.as_ptr().cast()
}

/// The library version, a static NUL-terminated string such as "0.1.0".
#[no_mangle]
pub extern "C" fn kd_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Validates the model in `model[0..model_len)` and writes to `*arena_size` the arena bytes
/// `kd_interpreter_init` needs for it (including up to 63 bytes of alignment slack).
///
/// # Safety
/// `model` must point to `model_len` readable bytes; `arena_size` must be writable.
#[no_mangle]
pub unsafe extern "C" fn kd_model_arena_size(
    model: *const u8,
    model_len: usize,
    arena_size: *mut usize,
) -> kd_status {
    guard(|| {
        if arena_size.is_null() {
            return kd_status::KD_STATUS_NULL_POINTER;
        }
        // SAFETY: caller contract.
        let bytes = match unsafe { bytes(model, model_len) } {
            Ok(b) => b,
            Err(s) => return s,
        };
        match Model::from_bytes(bytes).and_then(|m| m.arena_size()) {
            Ok(n) => {
                // SAFETY: non-null, writable by contract.
                unsafe { arena_size.write_unaligned(n) };
                kd_status::KD_STATUS_OK
            }
            Err(e) => status_of(&e),
        }
    })
}

/// Validates the model, plans the arena and prepares every operator; the handle is then ready
/// for inference.
///
/// `interp` may hold anything (it is overwritten). On failure the handle records the error
/// (read it with `kd_interpreter_last_error`) and every other call on it returns
/// `KD_STATUS_NOT_INITIALIZED`, unless the null/misaligned checks fail first, in which case
/// nothing is written.
///
/// Lifetimes: `model[0..model_len)` and `arena[0..arena_len)` are borrowed, not copied. Both
/// must stay valid and unmoved while the handle is used; the model bytes must not change; the
/// arena must not be touched except through this API. `arena` needs no particular alignment.
///
/// # Safety
/// `interp` must point to `sizeof(kd_interpreter)` writable bytes; `model` and `arena` to
/// `model_len` readable / `arena_len` writable bytes, under the lifetime rules above.
#[no_mangle]
pub unsafe extern "C" fn kd_interpreter_init(
    interp: *mut kd_interpreter,
    model: *const u8,
    model_len: usize,
    arena: *mut u8,
    arena_len: usize,
) -> kd_status {
    guard(|| {
        if let Err(s) = check_ptr(interp) {
            return s;
        }
        // SAFETY: caller contract; the borrows are made 'static under the documented
        // lifetime rules (the caller keeps both buffers alive while the handle is used).
        let parts = unsafe { bytes(model, model_len) }
            .and_then(|m| unsafe { bytes_mut(arena, arena_len) }.map(|a| (m, a)));
        let (result, status) = match parts {
            Err(s) => (
                Err(LastError::Argument(
                    if s == kd_status::KD_STATUS_NULL_POINTER {
                        "kd_interpreter_init: model or arena pointer is NULL"
                    } else {
                        "kd_interpreter_init: model or arena length exceeds PTRDIFF_MAX"
                    },
                )),
                s,
            ),
            Ok((m, a)) => match Model::from_bytes(m).and_then(|m| Interpreter::new(&m, a)) {
                Ok(i) => (Ok(i), kd_status::KD_STATUS_OK),
                Err(e) => (Err(LastError::Runtime(e)), status_of(&e)),
            },
        };
        let handle = match result {
            Ok(i) => Handle {
                magic: MAGIC_READY,
                interp: Some(i),
                last_error: LastError::None,
            },
            Err(e) => Handle {
                magic: MAGIC_FAILED,
                interp: None,
                last_error: e,
            },
        };
        // SAFETY: aligned, writable and large enough for a Handle (compile-time check).
        unsafe { interp.cast::<Handle>().write(handle) };
        status
    })
}

/// Copies the message of the last error recorded on `interp` (by a failed init or a failed
/// call on the handle; a successful call clears it) into `buf` as a NUL-terminated string, cut
/// at a character boundary when `buf_len` is too small. Returns the full message length in
/// bytes without the NUL (like `snprintf`): 0 when there is no error. With an unusable handle
/// (NULL, misaligned, not initialised) the message says so. `buf` may be NULL when `buf_len`
/// is 0, to ask for the length.
///
/// # Safety
/// `interp` as for the other calls; `buf` must point to `buf_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn kd_interpreter_last_error(
    interp: *const kd_interpreter,
    buf: *mut c_char,
    buf_len: usize,
) -> usize {
    guard_or(0, || {
        // SAFETY: the handle is only read here; the cast to *mut is for the shared helper.
        let err = match unsafe { handle_any(interp.cast_mut()) } {
            Ok(h) => h.last_error,
            Err(kd_status::KD_STATUS_NULL_POINTER) => {
                LastError::Argument("interpreter handle is NULL")
            }
            Err(kd_status::KD_STATUS_MISALIGNED) => {
                LastError::Argument("interpreter handle is misaligned")
            }
            Err(_) => LastError::Argument(
                "interpreter handle not initialised (call kd_interpreter_init first)",
            ),
        };
        // SAFETY: caller contract (a NULL buffer or a zero length writes nothing).
        let out = if buf.is_null() || buf_len == 0 || buf_len > MAX_LEN {
            &mut [][..]
        } else {
            unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), buf_len) }
        };
        write_c_string(&err, out)
    })
}

/// Writes `value`'s Display text into `out` (NUL-terminated, cut at a char boundary) and
/// returns the full text length.
fn write_c_string(value: &dyn fmt::Display, out: &mut [u8]) -> usize {
    struct Sink<'b> {
        out: &'b mut [u8],
        /// Bytes written into `out` (excluding the NUL).
        written: usize,
        /// Whether the text was cut; nothing more is written once it was.
        full: bool,
        total: usize,
    }
    impl fmt::Write for Sink<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.total += s.len();
            if self.full {
                return Ok(());
            }
            // One byte stays free for the NUL.
            let room = self.out.len().saturating_sub(1 + self.written);
            let mut n = s.len().min(room);
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            if n < s.len() {
                self.full = true;
            }
            if let Some(dst) = self.out.get_mut(self.written..self.written + n) {
                dst.copy_from_slice(&s.as_bytes()[..n]);
                self.written += n;
            }
            Ok(())
        }
    }
    let mut sink = Sink {
        out,
        written: 0,
        full: false,
        total: 0,
    };
    let _ = write!(sink, "{value}");
    let (written, total) = (sink.written, sink.total);
    if let Some(nul) = sink.out.get_mut(written) {
        *nul = 0;
    }
    total
}

/// Writes to `*count` the number of graph inputs.
///
/// # Safety
/// `interp` must be a handle passed to `kd_interpreter_init`; `count` must be writable.
#[no_mangle]
pub unsafe extern "C" fn kd_input_count(
    interp: *mut kd_interpreter,
    count: *mut usize,
) -> kd_status {
    // SAFETY: forwarded contract.
    unsafe { write_count(interp, count, |i| i.model().num_inputs()) }
}

/// Writes to `*count` the number of graph outputs.
///
/// # Safety
/// As `kd_input_count`.
#[no_mangle]
pub unsafe extern "C" fn kd_output_count(
    interp: *mut kd_interpreter,
    count: *mut usize,
) -> kd_status {
    // SAFETY: forwarded contract.
    unsafe { write_count(interp, count, |i| i.model().num_outputs()) }
}

/// # Safety
/// As `kd_input_count`.
unsafe fn write_count(
    interp: *mut kd_interpreter,
    count: *mut usize,
    f: impl FnOnce(&Interpreter<'static, 'static>) -> usize,
) -> kd_status {
    // SAFETY: forwarded contract; `count` is checked non-null and is writable.
    unsafe {
        with_interp(interp, |i| {
            if count.is_null() {
                return Err(LastError::Null("count"));
            }
            count.write_unaligned(f(i));
            Ok(())
        })
    }
}

/// The C description of a kdruntime tensor.
fn tensor_info(t: &kdrt::TensorInfo<'_>) -> kd_tensor_info {
    let mut dims = [0i32; KD_MAX_RANK];
    for (d, &s) in dims.iter_mut().zip(t.shape.dims()) {
        *d = s;
    }
    kd_tensor_info {
        tensor_index: t.index,
        dtype: match t.dtype {
            DType::Float32 => kd_dtype::KD_DTYPE_FLOAT32,
            DType::Float16 => kd_dtype::KD_DTYPE_FLOAT16,
            DType::Int32 => kd_dtype::KD_DTYPE_INT32,
            DType::UInt8 => kd_dtype::KD_DTYPE_UINT8,
            DType::Int64 => kd_dtype::KD_DTYPE_INT64,
            DType::Bool => kd_dtype::KD_DTYPE_BOOL,
            DType::Int16 => kd_dtype::KD_DTYPE_INT16,
            DType::Int8 => kd_dtype::KD_DTYPE_INT8,
        },
        rank: t.shape.rank() as u32,
        dims,
        scale: t.scale(),
        zero_point: t.zero_point(),
        num_scales: t.quant.len(),
        byte_size: t.byte_size(),
    }
}

/// Writes to `*info` the description of graph input `index`.
///
/// # Safety
/// `interp` must be a handle passed to `kd_interpreter_init`; `info` must be writable.
#[no_mangle]
pub unsafe extern "C" fn kd_input_info(
    interp: *mut kd_interpreter,
    index: usize,
    info: *mut kd_tensor_info,
) -> kd_status {
    // SAFETY: forwarded contract.
    unsafe { write_info(interp, info, |i| i.input_info(index)) }
}

/// Writes to `*info` the description of graph output `index`.
///
/// # Safety
/// As `kd_input_info`.
#[no_mangle]
pub unsafe extern "C" fn kd_output_info(
    interp: *mut kd_interpreter,
    index: usize,
    info: *mut kd_tensor_info,
) -> kd_status {
    // SAFETY: forwarded contract.
    unsafe { write_info(interp, info, |i| i.output_info(index)) }
}

/// # Safety
/// As `kd_input_info`.
unsafe fn write_info(
    interp: *mut kd_interpreter,
    info: *mut kd_tensor_info,
    f: impl FnOnce(&Interpreter<'static, 'static>) -> kdrt::Result<kdrt::TensorInfo<'static>>,
) -> kd_status {
    // SAFETY: forwarded contract; `info` is checked non-null and is writable.
    unsafe {
        with_interp(interp, |i| {
            if info.is_null() {
                return Err(LastError::Null("info"));
            }
            let t = f(i).map_err(LastError::Runtime)?;
            info.write_unaligned(tensor_info(&t));
            Ok(())
        })
    }
}

/// Writes to `*data` / `*len` where graph input `index` lives in the arena: fill it before
/// `kd_invoke` (int8 data as bytes, wider types little-endian). The pointer stays valid until
/// the handle is re-initialised or the arena freed.
///
/// # Safety
/// `interp` must be a handle passed to `kd_interpreter_init`; `data` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn kd_input_data(
    interp: *mut kd_interpreter,
    index: usize,
    data: *mut *mut u8,
    len: *mut usize,
) -> kd_status {
    // SAFETY: forwarded contract; both out-pointers are checked non-null and are writable.
    unsafe {
        with_interp(interp, |i| {
            if data.is_null() || len.is_null() {
                return Err(LastError::Null("data or len"));
            }
            let s = i.input_mut(index).map_err(LastError::Runtime)?;
            data.write_unaligned(s.as_mut_ptr());
            len.write_unaligned(s.len());
            Ok(())
        })
    }
}

/// Writes to `*data` / `*len` where graph output `index` lives (valid after `kd_invoke`, until
/// the next `kd_invoke`, re-initialisation or freeing of the arena or model).
///
/// # Safety
/// As `kd_input_data`.
#[no_mangle]
pub unsafe extern "C" fn kd_output_data(
    interp: *mut kd_interpreter,
    index: usize,
    data: *mut *const u8,
    len: *mut usize,
) -> kd_status {
    // SAFETY: as kd_input_data.
    unsafe {
        with_interp(interp, |i| {
            if data.is_null() || len.is_null() {
                return Err(LastError::Null("data or len"));
            }
            let s = i.output(index).map_err(LastError::Runtime)?;
            data.write_unaligned(s.as_ptr());
            len.write_unaligned(s.len());
            Ok(())
        })
    }
}

/// Runs the model on the current input tensors.
///
/// # Safety
/// `interp` must be a handle passed to `kd_interpreter_init`.
#[no_mangle]
pub unsafe extern "C" fn kd_invoke(interp: *mut kd_interpreter) -> kd_status {
    // SAFETY: forwarded contract.
    unsafe { with_interp(interp, |i| i.invoke().map_err(LastError::Runtime)) }
}

/// Sets how many threads each large convolution splits its output over (hosted builds with the
/// packed x86_64 kernels; elsewhere the value is stored and convolutions run on the caller's
/// thread). 1, the default, runs everything on the caller's thread; more start `threads - 1`
/// worker threads here, kept until the next call or `kd_interpreter_deinit`. `kd_invoke`
/// allocates nothing either way. 0 is an invalid argument.
///
/// # Safety
/// `interp` must be a handle passed to `kd_interpreter_init`.
#[no_mangle]
pub unsafe extern "C" fn kd_set_threads(interp: *mut kd_interpreter, threads: usize) -> kd_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_interp(interp, |i| {
            if threads == 0 {
                return Err(LastError::Argument(
                    "kd_set_threads: threads must be at least 1",
                ));
            }
            set_threads(i, threads);
            Ok(())
        })
    }
}

/// Ends a handle: stops the worker threads `kd_set_threads` started and leaves the handle not
/// initialised (every later call but `kd_interpreter_init` returns
/// `KD_STATUS_NOT_INITIALIZED`). Needed before freeing or re-initialising a handle whose
/// threads were raised above 1; harmless otherwise. `KD_STATUS_NOT_INITIALIZED` when the
/// handle is not initialised (or already ended).
///
/// # Safety
/// `interp` must be a handle passed to `kd_interpreter_init`, or zero-filled storage.
#[no_mangle]
pub unsafe extern "C" fn kd_interpreter_deinit(interp: *mut kd_interpreter) -> kd_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let handle = match unsafe { handle_any(interp) } {
            Ok(h) => h,
            Err(s) => return s,
        };
        handle.interp = None; // joins the workers
        handle.last_error = LastError::None;
        handle.magic = 0;
        kd_status::KD_STATUS_OK
    })
}

#[cfg(feature = "std")]
fn set_threads(i: &mut Interpreter, threads: usize) {
    i.set_threads(threads);
}

#[cfg(not(feature = "std"))]
fn set_threads(_: &mut Interpreter, _: usize) {}

/// A source image validated from C arguments.
///
/// # Safety
/// `pixels` must point to `pixels_len` readable bytes valid for `'s`.
unsafe fn source<'s>(
    pixels: *const u8,
    pixels_len: usize,
    height: usize,
    width: usize,
    stride: usize,
    format: i32,
) -> Result<Image<'s>, (kd_status, LastError)> {
    let format = match format {
        0 => PixelFormat::Rgb,
        1 => PixelFormat::Bgr,
        2 => PixelFormat::Rgba,
        3 => PixelFormat::Bgra,
        4 => PixelFormat::Gray,
        _ => {
            return Err((
                kd_status::KD_STATUS_INVALID_ARGUMENT,
                LastError::Argument("letterbox: unknown kd_pixel_format value"),
            ))
        }
    };
    // SAFETY: caller contract.
    let data = unsafe { bytes(pixels, pixels_len) }.map_err(|s| {
        (
            s,
            LastError::Argument("letterbox: pixel pointer is NULL or length exceeds PTRDIFF_MAX"),
        )
    })?;
    Image::new(data, height, width, stride, format)
        .map_err(|e| (kd_status::KD_STATUS_BAD_IMAGE, LastError::Letterbox(e)))
}

fn geometry(p: &lb::LetterboxParams) -> kd_letterbox_info {
    kd_letterbox_info {
        scale_num: p.scale_num,
        scale_den: p.scale_den,
        new_height: p.new_h,
        new_width: p.new_w,
        top: p.top,
        left: p.left,
    }
}

/// Letterboxes an image into graph input `input`, kdedge's one pre-processing (the same
/// integer function the trainer used; see kdruntime's `letterbox` module for the exact
/// definition).
///
/// The input tensor must be `[1, H, W, C]` with `C` 1 (grey) or 3 (RGB) and type uint8 (the
/// pixels are stored as is) or int8 (quantised with `*norm`, or mean 127 / std 128 when `norm`
/// is NULL; see `kd_normalization`). The source is `height x width` pixels of `format` (a
/// `kd_pixel_format` value) whose rows start `stride` bytes apart in `pixels[0..pixels_len)`.
/// When `info` is non-NULL the geometry used is written to it.
///
/// # Safety
/// `interp` must be a handle passed to `kd_interpreter_init`; `pixels` must point to
/// `pixels_len` readable bytes; `norm` and `info` must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn kd_letterbox(
    interp: *mut kd_interpreter,
    input: usize,
    pixels: *const u8,
    pixels_len: usize,
    height: usize,
    width: usize,
    stride: usize,
    format: i32,
    norm: *const kd_normalization,
    info: *mut kd_letterbox_info,
) -> kd_status {
    // SAFETY: forwarded contract for every pointer.
    unsafe {
        with_interp(interp, |interp| {
            let src = source(pixels, pixels_len, height, width, stride, format).map_err(|e| e.1)?;
            let norm = if norm.is_null() {
                DEFAULT_NORMALIZATION
            } else {
                norm.read_unaligned()
            };
            let t = interp.input_info(input).map_err(LastError::Runtime)?;
            let (h, w, out_format) = match *t.shape.dims() {
                [1, h, w, 3] if h > 0 && w > 0 => (h as usize, w as usize, OutputFormat::Rgb),
                [1, h, w, 1] if h > 0 && w > 0 => (h as usize, w as usize, OutputFormat::Gray),
                _ => {
                    return Err(LastError::Argument(
                        "letterbox: the input tensor is not [1, H, W, C] with C = 1 or 3",
                    ))
                }
            };
            let quant = match t.dtype {
                DType::UInt8 => None,
                DType::Int8 => {
                    let scale = t.scale();
                    // `!(x > 0)` also rejects NaN.
                    if !(scale > 0.0 && scale.is_finite()) {
                        return Err(LastError::Argument(
                            "letterbox: the int8 input tensor has no positive scale",
                        ));
                    }
                    if !(norm.std.is_finite() && norm.std != 0.0 && norm.mean.is_finite()) {
                        return Err(LastError::Argument(
                            "letterbox: normalisation mean must be finite and std finite and non-zero",
                        ));
                    }
                    Some((scale, t.zero_point() as f32))
                }
                _ => {
                    return Err(LastError::Argument(
                        "letterbox: the input tensor is neither uint8 nor int8",
                    ))
                }
            };
            let out = interp.input_mut(input).map_err(LastError::Runtime)?;
            let p = lb::letterbox(&src, h, w, out_format, out).map_err(LastError::Letterbox)?;
            if let Some((scale, zp)) = quant {
                lb::quantize_pixels_to_int8(out, norm.mean, norm.std, scale, zp);
            }
            if !info.is_null() {
                info.write_unaligned(geometry(&p));
            }
            Ok(())
        })
    }
}

/// Letterboxes an image into a caller buffer `out[0..out_len)` of exactly
/// `dst_height * dst_width * out_channels` bytes (NHWC, uint8), `out_channels` 3 (RGB) or 1
/// (grey, BT.601 integer luma). Source arguments as for `kd_letterbox`. No handle is needed;
/// errors are reported by status only.
///
/// # Safety
/// `pixels` must point to `pixels_len` readable bytes and `out` to `out_len` writable bytes
/// that do not overlap them; `info` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kd_letterbox_buffer(
    pixels: *const u8,
    pixels_len: usize,
    height: usize,
    width: usize,
    stride: usize,
    format: i32,
    dst_height: usize,
    dst_width: usize,
    out_channels: usize,
    out: *mut u8,
    out_len: usize,
    info: *mut kd_letterbox_info,
) -> kd_status {
    guard(|| {
        // SAFETY: caller contract.
        let src = match unsafe { source(pixels, pixels_len, height, width, stride, format) } {
            Ok(s) => s,
            Err((s, _)) => return s,
        };
        let out_format = match out_channels {
            3 => OutputFormat::Rgb,
            1 => OutputFormat::Gray,
            _ => return kd_status::KD_STATUS_INVALID_ARGUMENT,
        };
        // SAFETY: caller contract.
        let out = match unsafe { bytes_mut(out, out_len) } {
            Ok(o) => o,
            Err(s) => return s,
        };
        match lb::letterbox(&src, dst_height, dst_width, out_format, out) {
            Ok(p) => {
                if !info.is_null() {
                    // SAFETY: non-null and writable by contract.
                    unsafe { info.write_unaligned(geometry(&p)) };
                }
                kd_status::KD_STATUS_OK
            }
            Err(_) => kd_status::KD_STATUS_BAD_IMAGE,
        }
    })
}
