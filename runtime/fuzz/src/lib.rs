//! Bodies of the kdruntime fuzz targets, kept in a library so that the workspace's stable tests
//! (tests/tests/fuzz_body.rs) compile and run exactly this code without libFuzzer.

use kdruntime::{Interpreter, Model};

/// Largest arena a fuzz input may ask for; bigger plans are skipped (not errors).
pub const MAX_ARENA: usize = 1 << 22;

/// Model::from_bytes -> arena_size -> Interpreter::new -> invoke -> outputs, on arbitrary bytes.
/// Every step may fail with an error; none may panic, hang or read out of bounds. Returns how
/// far the input got (0: rejected by the reader ... 4: invoked), for the stable test's counts.
pub fn model_init_invoke(data: &[u8]) -> u32 {
    let Ok(model) = Model::from_bytes(data) else {
        return 0;
    };
    let Ok(size) = model.arena_size() else {
        return 1;
    };
    if size > MAX_ARENA {
        return 1;
    }
    let mut arena = vec![0u8; size];
    // An arena shorter than arena_size() must be refused, never overrun.
    if size > 0 {
        assert!(Interpreter::new(&model, &mut arena[..size - 1]).is_err());
    }
    let Ok(mut it) = Interpreter::new(&model, &mut arena) else {
        return 2;
    };
    for i in 0..model.num_inputs() {
        if let Ok(x) = it.input_mut(i) {
            x.fill(0x5a);
        }
    }
    if it.invoke().is_err() {
        return 3;
    }
    for o in 0..model.num_outputs() {
        let _ = it.output(o);
    }
    4
}
