//! cargo-fuzz target: arbitrary bytes as a model, through init and invoke.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kdruntime_fuzz::model_init_invoke(data);
});
