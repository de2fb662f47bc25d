//! The C functions called from Rust: results equal kdruntime's Rust API on generated models,
//! and every misuse (NULL, misaligned or uninitialised handles, bad models, small arenas, bad
//! indices, bad images) returns its status and a message equal to kdruntime's own error text.

use std::ffi::CStr;

use kdrt::letterbox::{letterbox, Image, OutputFormat, PixelFormat};
use kdtests::gen::{generate, suite, OpKind};

use crate::*;

fn zeroed() -> kd_interpreter {
    kd_interpreter {
        opaque: [0; KD_INTERPRETER_WORDS],
    }
}

fn last_error(h: &kd_interpreter) -> String {
    let mut buf = [0 as c_char; 512];
    let n = unsafe { kd_interpreter_last_error(h, buf.as_mut_ptr(), buf.len()) };
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(n, s.len(), "returned length vs written message");
    s
}

/// Rust API run of `model` on `inputs`: outputs.
fn rust_run(model: &[u8], inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let m = Model::from_bytes(model).unwrap();
    let mut arena = vec![0u8; m.arena_size().unwrap()];
    let mut it = Interpreter::new(&m, &mut arena).unwrap();
    for (i, x) in inputs.iter().enumerate() {
        it.input_mut(i).unwrap().copy_from_slice(x);
    }
    it.invoke().unwrap();
    (0..m.num_outputs())
        .map(|o| it.output(o).unwrap().to_vec())
        .collect()
}

#[test]
fn c_api_equals_rust_api_on_generated_models() {
    let models = suite(19, 7);
    let mut ran = 0;
    for g in &models {
        let m = Model::from_bytes(&g.model).unwrap();
        let mut need = 0usize;
        let s = unsafe { kd_model_arena_size(g.model.as_ptr(), g.model.len(), &mut need) };
        match m.arena_size() {
            Ok(n) => assert_eq!((s, need), (kd_status::KD_STATUS_OK, n), "{}", g.name),
            // Operators not wired into the interpreter yet: the same failure through C.
            Err(e) => {
                assert_eq!(s, status_of(&e), "{}", g.name);
                continue;
            }
        }
        // An arena at an odd address: the library aligns inside it.
        let mut arena = vec![0u8; need + 1];
        let mut h = zeroed();
        let s = unsafe {
            kd_interpreter_init(
                &mut h,
                g.model.as_ptr(),
                g.model.len(),
                arena[1..].as_mut_ptr(),
                need,
            )
        };
        if s != kd_status::KD_STATUS_OK {
            // Kernels still being wired in: the Rust API must fail identically.
            let mut a2 = vec![0u8; need];
            let e = Interpreter::new(&m, &mut a2)
                .err()
                .expect("C failed, Rust did not");
            assert_eq!(s, status_of(&e), "{}", g.name);
            assert_eq!(last_error(&h), e.to_string(), "{}", g.name);
            continue;
        }
        let (mut n_in, mut n_out) = (0, 0);
        assert_eq!(
            unsafe { kd_input_count(&mut h, &mut n_in) },
            kd_status::KD_STATUS_OK
        );
        assert_eq!(
            unsafe { kd_output_count(&mut h, &mut n_out) },
            kd_status::KD_STATUS_OK
        );
        assert_eq!(
            (n_in, n_out),
            (m.num_inputs(), m.num_outputs()),
            "{}",
            g.name
        );
        for (i, x) in g.inputs.iter().enumerate() {
            let mut info = tensor_info(&m.tensor(0).unwrap());
            assert_eq!(
                unsafe { kd_input_info(&mut h, i, &mut info) },
                kd_status::KD_STATUS_OK
            );
            let t = m.tensor(m.input_tensor_index(i).unwrap()).unwrap();
            assert_eq!(info.tensor_index, t.index);
            assert_eq!(info.rank as usize, t.shape.rank());
            assert_eq!(&info.dims[..t.shape.rank()], t.shape.dims());
            assert_eq!(info.byte_size, x.len());
            assert_eq!((info.scale, info.zero_point), (t.scale(), t.zero_point()));
            let (mut p, mut len) = (ptr::null_mut(), 0);
            assert_eq!(
                unsafe { kd_input_data(&mut h, i, &mut p, &mut len) },
                kd_status::KD_STATUS_OK
            );
            assert_eq!(len, x.len());
            unsafe { core::slice::from_raw_parts_mut(p, len) }.copy_from_slice(x);
        }
        assert_eq!(
            unsafe { kd_invoke(&mut h) },
            kd_status::KD_STATUS_OK,
            "{}: {}",
            g.name,
            last_error(&h)
        );
        let want = rust_run(&g.model, &g.inputs);
        for (o, w) in want.iter().enumerate() {
            let (mut p, mut len) = (ptr::null(), 0);
            assert_eq!(
                unsafe { kd_output_data(&mut h, o, &mut p, &mut len) },
                kd_status::KD_STATUS_OK
            );
            assert_eq!(
                unsafe { core::slice::from_raw_parts(p, len) },
                &w[..],
                "{}",
                g.name
            );
            let mut info = tensor_info(&m.tensor(0).unwrap());
            assert_eq!(
                unsafe { kd_output_info(&mut h, o, &mut info) },
                kd_status::KD_STATUS_OK
            );
            assert_eq!(info.byte_size, w.len());
        }
        ran += 1;
    }
    // Every generated operator kind runs in kdruntime.
    assert!(
        ran == models.len(),
        "only {ran} of {} generated models ran",
        models.len()
    );
}

#[test]
fn bad_handles_are_errors() {
    let g = generate(OpKind::Relu, 3);
    let mut arena = vec![0u8; 1 << 16];
    let null: *mut kd_interpreter = ptr::null_mut();
    unsafe {
        assert_eq!(
            kd_interpreter_init(
                null,
                g.model.as_ptr(),
                g.model.len(),
                arena.as_mut_ptr(),
                arena.len()
            ),
            kd_status::KD_STATUS_NULL_POINTER
        );
        assert_eq!(kd_invoke(null), kd_status::KD_STATUS_NULL_POINTER);
        // A handle one byte off its alignment, inside a larger zeroed buffer.
        let mut words = [0u64; KD_INTERPRETER_WORDS + 1];
        let odd = words
            .as_mut_ptr()
            .cast::<u8>()
            .add(1)
            .cast::<kd_interpreter>();
        assert_eq!(kd_invoke(odd), kd_status::KD_STATUS_MISALIGNED);
        assert_eq!(
            kd_interpreter_init(
                odd,
                g.model.as_ptr(),
                g.model.len(),
                arena.as_mut_ptr(),
                arena.len()
            ),
            kd_status::KD_STATUS_MISALIGNED
        );
        let mut h = zeroed();
        assert_eq!(kd_invoke(&mut h), kd_status::KD_STATUS_NOT_INITIALIZED);
        let mut n = 0;
        assert_eq!(
            kd_input_count(&mut h, &mut n),
            kd_status::KD_STATUS_NOT_INITIALIZED
        );
        assert!(last_error(&h).contains("not initialised"));
        let mut buf = [1 as c_char; 8];
        assert!(kd_interpreter_last_error(ptr::null(), buf.as_mut_ptr(), 8) > 8);
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_bytes(), b"interpr");
        // NULL model / arena pointers.
        assert_eq!(
            kd_interpreter_init(&mut h, ptr::null(), 10, arena.as_mut_ptr(), arena.len()),
            kd_status::KD_STATUS_NULL_POINTER
        );
        assert!(last_error(&h).contains("NULL"));
        assert_eq!(
            kd_interpreter_init(&mut h, g.model.as_ptr(), g.model.len(), ptr::null_mut(), 0),
            kd_status::KD_STATUS_NULL_POINTER
        );
        assert_eq!(
            kd_model_arena_size(g.model.as_ptr(), usize::MAX, &mut n),
            kd_status::KD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            kd_model_arena_size(g.model.as_ptr(), g.model.len(), ptr::null_mut()),
            kd_status::KD_STATUS_NULL_POINTER
        );
    }
}

#[test]
fn model_and_arena_errors_carry_kdruntime_messages() {
    let g = generate(OpKind::Conv2d, 11);
    let m = Model::from_bytes(&g.model).unwrap();
    let need = m.arena_size().unwrap();
    let mut arena = vec![0u8; need];
    let mut h = zeroed();
    unsafe {
        // Truncated model: malformed, with kdruntime's message.
        let cut = &g.model[..g.model.len() / 2];
        let want = Model::from_bytes(cut).err().unwrap();
        let s = kd_interpreter_init(&mut h, cut.as_ptr(), cut.len(), arena.as_mut_ptr(), need);
        assert_eq!(s, status_of(&want));
        assert_eq!(last_error(&h), want.to_string());
        let mut n = 0;
        assert_eq!(
            kd_model_arena_size(cut.as_ptr(), cut.len(), &mut n),
            status_of(&want)
        );
        // A failed init leaves a handle that refuses work but keeps its message.
        assert_eq!(kd_invoke(&mut h), kd_status::KD_STATUS_NOT_INITIALIZED);
        assert_eq!(last_error(&h), want.to_string());

        // Arena one byte short.
        let s = kd_interpreter_init(
            &mut h,
            g.model.as_ptr(),
            g.model.len(),
            arena.as_mut_ptr(),
            need - 1,
        );
        assert_eq!(s, kd_status::KD_STATUS_ARENA_TOO_SMALL);
        assert_eq!(
            last_error(&h),
            format!(
                "arena too small: the plan needs {need} bytes, {} were given",
                need - 1
            )
        );

        // Success clears the error; a bad index sets it again.
        let s = kd_interpreter_init(
            &mut h,
            g.model.as_ptr(),
            g.model.len(),
            arena.as_mut_ptr(),
            need,
        );
        assert_eq!(s, kd_status::KD_STATUS_OK);
        assert_eq!(last_error(&h), "");
        let mut info = tensor_info(&m.tensor(0).unwrap());
        let s = kd_output_info(&mut h, 5, &mut info);
        assert_eq!(s, kd_status::KD_STATUS_INDEX_OUT_OF_RANGE);
        assert_eq!(
            last_error(&h),
            m.output_tensor_index(5).err().unwrap().to_string()
        );
        let (mut p, mut len) = (ptr::null_mut(), 0usize);
        assert_eq!(
            kd_input_data(&mut h, 0, ptr::null_mut(), &mut len),
            kd_status::KD_STATUS_NULL_POINTER
        );
        assert_eq!(last_error(&h), "data or len is NULL");
        assert_eq!(
            kd_input_data(&mut h, 9, &mut p, &mut len),
            kd_status::KD_STATUS_INDEX_OUT_OF_RANGE
        );
        let msg = last_error(&h);
        assert_eq!(msg, "graph input index 9 out of range (there are 1)");

        // Truncation: snprintf-like length, cut message, NUL at the end.
        let mut small = [0x55 as c_char; 6];
        let n = kd_interpreter_last_error(&h, small.as_mut_ptr(), small.len());
        assert_eq!(n, msg.len());
        assert_eq!(CStr::from_ptr(small.as_ptr()).to_str().unwrap(), &msg[..5]);
        assert_eq!(kd_interpreter_last_error(&h, ptr::null_mut(), 0), msg.len());
    }
}

#[test]
fn status_strings_cover_every_value() {
    for (v, want) in [
        (0, "ok"),
        (10, "arena too small"),
        (14, "internal error (caught panic)"),
        (-1, "unknown status"),
        (15, "unknown status"),
    ] {
        let s = unsafe { CStr::from_ptr(kd_status_string(v)) }
            .to_str()
            .unwrap();
        assert_eq!(s, want);
    }
    let v = unsafe { CStr::from_ptr(kd_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(kd_interpreter_size(), 8 * KD_INTERPRETER_WORDS);
    assert_eq!(kd_interpreter_align(), align_of::<u64>());
}

#[test]
fn letterbox_buffer_checks_arguments() {
    // 2x3 RGB source, rows padded to 10 bytes.
    let px: Vec<u8> = (0..20).map(|i| (i * 13) as u8).collect();
    let mut out = [0u8; 4 * 4 * 3];
    let mut geo = kd_letterbox_info::default();
    unsafe {
        let s = kd_letterbox_buffer(
            px.as_ptr(),
            px.len(),
            2,
            3,
            10,
            0,
            4,
            4,
            3,
            out.as_mut_ptr(),
            out.len(),
            &mut geo,
        );
        assert_eq!(s, kd_status::KD_STATUS_OK);
        let src = Image::new(&px, 2, 3, 10, PixelFormat::Rgb).unwrap();
        let mut want = [0u8; 48];
        let p = letterbox(&src, 4, 4, OutputFormat::Rgb, &mut want).unwrap();
        assert_eq!(out, want);
        // Scale 4/3: 2x3 -> round(2 * 4 / 3) = 3 rows x 4 columns, top = floor((4 - 3) / 2) = 0.
        assert_eq!(
            (
                geo.scale_num,
                geo.scale_den,
                geo.new_height,
                geo.new_width,
                geo.top,
                geo.left
            ),
            (4, 3, 3, 4, 0, 0)
        );
        assert_eq!((p.new_h, p.new_w), (3, 4));
        let bad = |s| assert_ne!(s, kd_status::KD_STATUS_OK);
        // Stride below width * channels, unknown format, wrong out size, bad channel count.
        bad(kd_letterbox_buffer(
            px.as_ptr(),
            px.len(),
            2,
            3,
            8,
            0,
            4,
            4,
            3,
            out.as_mut_ptr(),
            48,
            ptr::null_mut(),
        ));
        assert_eq!(
            kd_letterbox_buffer(
                px.as_ptr(),
                px.len(),
                2,
                3,
                10,
                7,
                4,
                4,
                3,
                out.as_mut_ptr(),
                48,
                ptr::null_mut()
            ),
            kd_status::KD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            kd_letterbox_buffer(
                px.as_ptr(),
                px.len(),
                2,
                3,
                10,
                0,
                4,
                4,
                3,
                out.as_mut_ptr(),
                47,
                ptr::null_mut()
            ),
            kd_status::KD_STATUS_BAD_IMAGE
        );
        assert_eq!(
            kd_letterbox_buffer(
                px.as_ptr(),
                px.len(),
                2,
                3,
                10,
                0,
                4,
                4,
                2,
                out.as_mut_ptr(),
                32,
                ptr::null_mut()
            ),
            kd_status::KD_STATUS_INVALID_ARGUMENT
        );
        // Source buffer one byte short of (h - 1) * stride + w * 3 = 19.
        assert_eq!(
            kd_letterbox_buffer(
                px.as_ptr(),
                18,
                2,
                3,
                10,
                0,
                4,
                4,
                3,
                out.as_mut_ptr(),
                48,
                ptr::null_mut()
            ),
            kd_status::KD_STATUS_BAD_IMAGE
        );
        assert_eq!(
            kd_letterbox_buffer(
                ptr::null(),
                0,
                2,
                3,
                10,
                0,
                4,
                4,
                3,
                out.as_mut_ptr(),
                48,
                ptr::null_mut()
            ),
            kd_status::KD_STATUS_NULL_POINTER
        );
    }
}

/// A generated model whose input 0 is int8 `[1, H, W, C]` with C 1 or 3.
fn int8_image_model() -> Option<kdtests::gen::GenModel> {
    (0..200u64).map(|s| generate(OpKind::Conv2d, s)).find(|g| {
        let m = Model::from_bytes(&g.model).unwrap();
        let t = m.tensor(m.input_tensor_index(0).unwrap()).unwrap();
        t.dtype == DType::Int8 && matches!(t.shape.dims(), &[1, _, _, 1] | &[1, _, _, 3])
    })
}

#[test]
fn letterbox_quantises_int8_inputs_like_kdrun() {
    let g = int8_image_model().expect("a generated CONV_2D model with an int8 [1,H,W,1|3] input");
    let m = Model::from_bytes(&g.model).unwrap();
    let t = m.tensor(m.input_tensor_index(0).unwrap()).unwrap();
    let &[1, hh, ww, c] = t.shape.dims() else {
        unreachable!()
    };
    let (hh, ww) = (hh as usize, ww as usize);
    let mut arena = vec![0u8; m.arena_size().unwrap()];
    let mut h = zeroed();
    // A 5x7 BGRA source with a gradient.
    let px: Vec<u8> = (0..5 * 7 * 4).map(|i| (i * 7 % 256) as u8).collect();
    let norm = kd_normalization {
        mean: 100.0,
        std: 50.0,
    };
    unsafe {
        let s = kd_interpreter_init(
            &mut h,
            g.model.as_ptr(),
            g.model.len(),
            arena.as_mut_ptr(),
            arena.len(),
        );
        assert_eq!(s, kd_status::KD_STATUS_OK, "{}", last_error(&h));
        let s = kd_letterbox(
            &mut h,
            0,
            px.as_ptr(),
            px.len(),
            5,
            7,
            28,
            3,
            &norm,
            ptr::null_mut(),
        );
        assert_eq!(s, kd_status::KD_STATUS_OK, "{}", last_error(&h));
        let (mut p, mut len) = (ptr::null_mut(), 0);
        assert_eq!(
            kd_input_data(&mut h, 0, &mut p, &mut len),
            kd_status::KD_STATUS_OK
        );
        let got = core::slice::from_raw_parts(p, len).to_vec();
        // Expected: the letterbox, then the documented float formula written out here.
        let src = Image::packed(&px, 5, 7, PixelFormat::Bgra).unwrap();
        let fmt = if c == 3 {
            OutputFormat::Rgb
        } else {
            OutputFormat::Gray
        };
        let mut boxed = vec![0u8; hh * ww * c as usize];
        letterbox(&src, hh, ww, fmt, &mut boxed).unwrap();
        let (scale, zp) = (t.scale(), t.zero_point() as f32);
        let want: Vec<u8> = boxed
            .iter()
            .map(|&v| {
                let x = ((v as f32 - 100.0) / 50.0) / scale;
                // Round half away from zero, then clamp to int8.
                let r = if x >= 0.0 {
                    (x + 0.5).floor()
                } else {
                    (x - 0.5).ceil()
                };
                (r + zp).clamp(-128.0, 127.0) as i8 as u8
            })
            .collect();
        assert_eq!(got, want);
        // Errors name the letterbox problem; std 0 is rejected.
        let s = kd_letterbox(
            &mut h,
            0,
            px.as_ptr(),
            10,
            5,
            7,
            28,
            3,
            &norm,
            ptr::null_mut(),
        );
        assert_eq!(s, kd_status::KD_STATUS_BAD_IMAGE);
        assert!(
            last_error(&h).starts_with("letterbox: source buffer has 10 bytes"),
            "{}",
            last_error(&h)
        );
        let zero = kd_normalization {
            mean: 0.0,
            std: 0.0,
        };
        let s = kd_letterbox(
            &mut h,
            0,
            px.as_ptr(),
            px.len(),
            5,
            7,
            28,
            3,
            &zero,
            ptr::null_mut(),
        );
        assert_eq!(s, kd_status::KD_STATUS_INVALID_ARGUMENT);
        let s = kd_letterbox(
            &mut h,
            3,
            px.as_ptr(),
            px.len(),
            5,
            7,
            28,
            3,
            &norm,
            ptr::null_mut(),
        );
        assert_eq!(s, kd_status::KD_STATUS_INDEX_OUT_OF_RANGE);
    }
}

#[test]
fn threads_give_the_same_bytes_and_deinit_ends_the_handle() {
    let net = kdtests::nets::mobilenet_v2(0.35, 96, 10, 3);
    let want = rust_run(&net.model, std::slice::from_ref(&net.input));
    let mut need = 0usize;
    let s = unsafe { kd_model_arena_size(net.model.as_ptr(), net.model.len(), &mut need) };
    assert_eq!(s, kd_status::KD_STATUS_OK);
    let mut arena = vec![0u8; need];
    let mut h = zeroed();
    // Deinit of storage that was never initialised is refused.
    assert_eq!(
        unsafe { kd_interpreter_deinit(&mut h) },
        kd_status::KD_STATUS_NOT_INITIALIZED
    );
    for threads in [2, 3, 1, 2] {
        let s = unsafe {
            kd_interpreter_init(
                &mut h,
                net.model.as_ptr(),
                net.model.len(),
                arena.as_mut_ptr(),
                need,
            )
        };
        assert_eq!(s, kd_status::KD_STATUS_OK);
        assert_eq!(
            unsafe { kd_set_threads(&mut h, 0) },
            kd_status::KD_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            unsafe { kd_set_threads(&mut h, threads) },
            kd_status::KD_STATUS_OK
        );
        for _ in 0..2 {
            let (mut p, mut len) = (ptr::null_mut(), 0);
            assert_eq!(
                unsafe { kd_input_data(&mut h, 0, &mut p, &mut len) },
                kd_status::KD_STATUS_OK
            );
            unsafe { core::slice::from_raw_parts_mut(p, len) }.copy_from_slice(&net.input);
            assert_eq!(unsafe { kd_invoke(&mut h) }, kd_status::KD_STATUS_OK);
            let (mut q, mut len) = (ptr::null(), 0);
            assert_eq!(
                unsafe { kd_output_data(&mut h, 0, &mut q, &mut len) },
                kd_status::KD_STATUS_OK
            );
            assert_eq!(
                unsafe { core::slice::from_raw_parts(q, len) },
                &want[0][..],
                "{threads} threads"
            );
        }
        assert_eq!(
            unsafe { kd_interpreter_deinit(&mut h) },
            kd_status::KD_STATUS_OK
        );
        assert_eq!(
            unsafe { kd_invoke(&mut h) },
            kd_status::KD_STATUS_NOT_INITIALIZED
        );
        assert_eq!(
            unsafe { kd_interpreter_deinit(&mut h) },
            kd_status::KD_STATUS_NOT_INITIALIZED
        );
    }
}
