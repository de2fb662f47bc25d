//! Runs a model in kdruntime the way an application does (validate, size the arena, init,
//! fill inputs, invoke, read outputs), for the parity tests and benchmarks.

use kdruntime::kernels::simd::Kernels;
use kdruntime::{Interpreter, Model};

/// Every kernel family, for tests that check each against the reference.
pub const ALL_KERNELS: [Kernels; 3] = [Kernels::Reference, Kernels::Avx2, Kernels::Fastest];

/// Outputs of one kdruntime run.
#[derive(Clone, Debug)]
pub struct Run {
    /// Raw bytes of every graph output, in order.
    pub outputs: Vec<Vec<u8>>,
    /// `Model::arena_size_for(kernels)` for the model.
    pub arena_bytes: usize,
}

/// Loads `model`, runs it once on `inputs` (one raw buffer per graph input) and returns the
/// outputs. A wrong input length is reported as `UnsupportedModel` naming the mismatch.
pub fn run(model: &[u8], inputs: &[Vec<u8>]) -> Result<Run, kdruntime::Error> {
    run_with(model, inputs, Kernels::default())
}

/// [`run`] on the given kernel family.
pub fn run_with(
    model: &[u8],
    inputs: &[Vec<u8>],
    kernels: Kernels,
) -> Result<Run, kdruntime::Error> {
    let m = Model::from_bytes(model)?;
    let arena_bytes = m.arena_size_for(kernels)?;
    let mut arena = vec![0u8; arena_bytes];
    let mut interp = Interpreter::with_kernels(&m, &mut arena, kernels)?;
    if inputs.len() != m.num_inputs() {
        return Err(kdruntime::Error::UnsupportedModel {
            reason: "test supplied a different number of inputs than the model has",
        });
    }
    for (i, x) in inputs.iter().enumerate() {
        let dst = interp.input_mut(i)?;
        if dst.len() != x.len() {
            return Err(kdruntime::Error::UnsupportedModel {
                reason: "test input length differs from the model's input size",
            });
        }
        dst.copy_from_slice(x);
    }
    interp.invoke()?;
    let outputs = (0..m.num_outputs())
        .map(|i| interp.output(i).map(<[u8]>::to_vec))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Run {
        outputs,
        arena_bytes,
    })
}
