//! Device selection: `--device auto|cpu|cuda`, resolved once against what libtorch sees.

use anyhow::{bail, Result};
use tch::{Cuda, Device};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// CUDA device 0 when libtorch sees one, otherwise the CPU.
    Auto,
    /// Always the CPU.
    Cpu,
    /// CUDA device 0; an error when none is visible.
    Cuda,
}

/// Resolves a choice to a device, failing clearly when CUDA is demanded but absent.
pub fn resolve(choice: Choice) -> Result<Device> {
    let cuda = Cuda::is_available();
    Ok(match choice {
        Choice::Cpu => Device::Cpu,
        Choice::Auto if cuda => Device::Cuda(0),
        Choice::Auto => Device::Cpu,
        Choice::Cuda if cuda => Device::Cuda(0),
        Choice::Cuda => bail!(
            "--device cuda: libtorch sees no CUDA device (build with --features cuda and run \
             where a GPU and its driver are present, or use --device cpu)"
        ),
    })
}

/// A human-readable summary of the libtorch runtime and the chosen device.
pub fn report(device: Device) -> String {
    format!(
        "libtorch threads: {}\ncuda available: {}\ncuda devices: {}\ncudnn available: {}\ndevice: {:?}\n",
        tch::get_num_threads(),
        Cuda::is_available(),
        Cuda::device_count(),
        Cuda::cudnn_is_available(),
        device
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_resolvable_and_cuda_matches_libtorch() {
        assert_eq!(resolve(Choice::Cpu).unwrap(), Device::Cpu);
        let auto = resolve(Choice::Auto).unwrap();
        assert_eq!(auto == Device::Cpu, !Cuda::is_available());
        assert_eq!(resolve(Choice::Cuda).is_ok(), Cuda::is_available());
    }

    #[test]
    fn a_tensor_computes_on_the_resolved_device() {
        let device = resolve(Choice::Auto).unwrap();
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]).to_device(device);
        let sum = (&t * &t).sum(tch::Kind::Float).to_device(Device::Cpu);
        assert_eq!(sum.double_value(&[]), 14.0);
    }
}
