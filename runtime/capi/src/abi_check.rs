//! Parses include/kdruntime.h with libclang (through bindgen) and checks what a C compiler sees
//! against the Rust definitions: struct sizes, alignments and field offsets (clang's layout vs
//! the compiled Rust types), enum values (clang's vs the compiled discriminants) and function
//! signatures (bindgen's translation of each C prototype vs the `#[no_mangle]` Rust function).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{EnumVariantValue, ParseCallbacks};
use quote::ToTokens;

use crate::*;

type EnumValues = Arc<Mutex<BTreeMap<String, i64>>>;

/// Records every enum constant clang evaluates.
#[derive(Debug)]
struct Collect(EnumValues);

impl ParseCallbacks for Collect {
    fn enum_variant_name(
        &self,
        _enum_name: Option<&str>,
        name: &str,
        value: EnumVariantValue,
    ) -> Option<String> {
        let v = match value {
            EnumVariantValue::Boolean(b) => i64::from(b),
            EnumVariantValue::Signed(v) => v,
            EnumVariantValue::Unsigned(v) => v as i64,
        };
        self.0.lock().unwrap().insert(name.to_string(), v);
        None
    }
}

/// bindgen's Rust text for the header, and the enum constants clang saw.
fn parse_header() -> (String, BTreeMap<String, i64>) {
    let header = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/kdruntime.h");
    let values = EnumValues::default();
    let bindings = bindgen::Builder::default()
        .header(header)
        // Only what the header itself declares (not stddef.h's max_align_t...).
        .allowlist_file(".*kdruntime\\.h")
        .parse_callbacks(Box::new(Collect(values.clone())))
        .layout_tests(true)
        .generate()
        .expect("libclang could not parse include/kdruntime.h (is libclang-dev installed?)");
    let text = bindings.to_string();
    let values = values.lock().unwrap().clone();
    (text, values)
}

/// The number after `- ` and before `usize` that follows `key` in bindgen's layout assertions,
/// e.g. `["Size of kd_tensor_info"][size_of::<kd_tensor_info>() - 80usize]`.
fn layout_number(text: &str, key: &str) -> Option<usize> {
    let at = text.find(&format!("\"{key}\""))?;
    let rest = &text[at..];
    let end = rest.find("usize")?;
    let digits: String = rest[..end]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

macro_rules! rust_layouts {
    ($($ty:ident { $($field:ident),* })*) => {
        /// `(type, size, align, [(field, offset)])` of every struct in the header.
        fn rust_layouts() -> Vec<(&'static str, usize, usize, Vec<(&'static str, usize)>)> {
            vec![$((
                stringify!($ty),
                size_of::<$ty>(),
                align_of::<$ty>(),
                vec![$((stringify!($field), core::mem::offset_of!($ty, $field))),*],
            )),*]
        }
    };
}

rust_layouts! {
    kd_interpreter { opaque }
    kd_tensor_info { tensor_index, dtype, rank, dims, scale, zero_point, num_scales, byte_size }
    kd_letterbox_info { scale_num, scale_den, new_height, new_width, top, left }
    kd_normalization { mean, std }
}

#[test]
fn struct_layouts_match_clang() {
    let (text, _) = parse_header();
    for (ty, size, align, fields) in rust_layouts() {
        assert_eq!(
            layout_number(&text, &format!("Size of {ty}")),
            Some(size),
            "sizeof({ty}): clang vs Rust"
        );
        assert_eq!(
            layout_number(&text, &format!("Alignment of {ty}")),
            Some(align),
            "_Alignof({ty}): clang vs Rust"
        );
        for (field, offset) in fields {
            assert_eq!(
                layout_number(&text, &format!("Offset of field: {ty}::{field}")),
                Some(offset),
                "offsetof({ty}, {field}): clang vs Rust"
            );
        }
    }
    // Every struct clang saw is one of ours (no struct escaped the check above).
    let ours: BTreeSet<_> = rust_layouts().iter().map(|l| l.0.to_string()).collect();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"Size of ") {
        rest = &rest[at + 9..];
        let name: String = rest.chars().take_while(|&c| c != '"').collect();
        assert!(
            ours.contains(&name),
            "struct {name} in the header is not checked"
        );
    }
}

macro_rules! rust_enum_values {
    ($($ty:ident { $($v:ident),* })*) => {
        /// `(variant, value)` of every enum constant, from the compiled Rust enums.
        fn rust_enum_values() -> BTreeMap<String, i64> {
            let mut m = BTreeMap::new();
            $($(m.insert(stringify!($v).to_string(), $ty::$v as i64);)*)*
            m
        }
    };
}

rust_enum_values! {
    kd_status {
        KD_STATUS_OK, KD_STATUS_NULL_POINTER, KD_STATUS_INVALID_ARGUMENT, KD_STATUS_MISALIGNED,
        KD_STATUS_NOT_INITIALIZED, KD_STATUS_MALFORMED_MODEL, KD_STATUS_UNSUPPORTED_MODEL,
        KD_STATUS_BAD_TENSOR, KD_STATUS_UNSUPPORTED_OPERATOR, KD_STATUS_INVALID_OPERATOR,
        KD_STATUS_ARENA_TOO_SMALL, KD_STATUS_TOO_MANY_TENSORS, KD_STATUS_INDEX_OUT_OF_RANGE,
        KD_STATUS_BAD_IMAGE, KD_STATUS_INTERNAL_ERROR
    }
    kd_dtype {
        KD_DTYPE_FLOAT32, KD_DTYPE_FLOAT16, KD_DTYPE_INT32, KD_DTYPE_UINT8, KD_DTYPE_INT64,
        KD_DTYPE_BOOL, KD_DTYPE_INT16, KD_DTYPE_INT8
    }
    kd_pixel_format { KD_PIXEL_RGB, KD_PIXEL_BGR, KD_PIXEL_RGBA, KD_PIXEL_BGRA, KD_PIXEL_GRAY }
}

/// The Rust source of this crate, parsed.
fn rust_source() -> syn::File {
    syn::parse_file(include_str!("lib.rs")).expect("src/lib.rs parses")
}

#[test]
fn enum_values_match_clang() {
    let (_, clang) = parse_header();
    assert_eq!(clang, rust_enum_values(), "enum constants: clang vs Rust");
    // The macro list above covers every variant declared in src/lib.rs.
    let mut declared = BTreeSet::new();
    for item in rust_source().items {
        if let syn::Item::Enum(e) = item {
            if !matches!(e.vis, syn::Visibility::Public(_)) {
                continue;
            }
            for v in e.variants {
                declared.insert(v.ident.to_string());
            }
        }
    }
    let listed: BTreeSet<_> = rust_enum_values().into_keys().collect();
    assert_eq!(
        declared, listed,
        "enum variants in src/lib.rs vs the checked list"
    );
}

/// Type tokens with paths reduced to their last segment (`::std::os::raw::c_char` and
/// `core::ffi::c_char` both become `c_char`).
fn norm_type(ty: &syn::Type) -> String {
    let s = ty.to_token_stream().to_string();
    s.replace(":: std :: os :: raw :: ", "")
        .replace(":: core :: ffi :: ", "")
        .replace("core :: ffi :: ", "")
        .replace("std :: os :: raw :: ", "")
}

/// `name(arg: type, ...) -> ret` with normalised types.
fn signature(sig: &syn::Signature) -> String {
    let args: Vec<String> = sig
        .inputs
        .iter()
        .map(|a| match a {
            syn::FnArg::Typed(p) => format!("{}: {}", p.pat.to_token_stream(), norm_type(&p.ty)),
            syn::FnArg::Receiver(_) => "self".to_string(),
        })
        .collect();
    let ret = match &sig.output {
        syn::ReturnType::Default => "()".to_string(),
        syn::ReturnType::Type(_, t) => norm_type(t),
    };
    format!("{}({}) -> {}", sig.ident, args.join(", "), ret)
}

#[test]
fn function_signatures_match_clang() {
    let (text, _) = parse_header();
    let generated = syn::parse_file(&text).expect("bindgen output parses");
    let mut from_header = BTreeMap::new();
    for item in generated.items {
        if let syn::Item::ForeignMod(m) = item {
            for fi in m.items {
                if let syn::ForeignItem::Fn(f) = fi {
                    from_header.insert(f.sig.ident.to_string(), signature(&f.sig));
                }
            }
        }
    }
    let mut from_rust = BTreeMap::new();
    for item in rust_source().items {
        if let syn::Item::Fn(f) = item {
            let exported = f.attrs.iter().any(|a| a.path().is_ident("no_mangle"));
            if exported {
                assert!(
                    f.sig.abi.is_some(),
                    "{} is #[no_mangle] but not extern \"C\"",
                    f.sig.ident
                );
                from_rust.insert(f.sig.ident.to_string(), signature(&f.sig));
            }
        }
    }
    assert!(
        from_rust.len() >= 15,
        "found only {} exported functions",
        from_rust.len()
    );
    assert_eq!(
        from_header, from_rust,
        "function signatures: header (via clang) vs Rust"
    );
}
