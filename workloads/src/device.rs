//! Where a job runs: `cpu` (Burn ndarray), `cuda:N` (Burn CUDA, behind the
//! `cuda` feature) or `flex-cpu` (Burn flex, behind `flex`: a second
//! CPU backend whose rounding differs from ndarray's).

use std::fmt;
use std::str::FromStr;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::AutodiffBackend;

use crate::WorkloadError;

/// Work that runs on whichever Burn backend a [`Device`] picks: a workload
/// writes its kernels once, generic over the backend.
pub trait OnBackend {
    type Output;
    fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<Self::Output, WorkloadError>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
    FlexCpu,
}

impl Device {
    /// The backend label written into receipts. Replays on the same label
    /// must match bitwise; different labels use the manifest's tolerance.
    pub fn backend(&self) -> &'static str {
        match self {
            Device::Cpu => "burn-ndarray-f32",
            Device::Cuda(_) => "burn-cuda-f32",
            Device::FlexCpu => "burn-flex-f32",
        }
    }

    /// Runs `job` on this device's Burn backend (autodiff over ndarray on
    /// `cpu`, over CUDA on `cuda:N`).
    pub fn run<J: OnBackend>(&self, job: J) -> Result<J::Output, WorkloadError> {
        match self {
            Device::Cpu => {
                let device = burn::backend::ndarray::NdArrayDevice::Cpu;
                job.run::<Autodiff<NdArray<f32>>>(&device)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(index) => {
                let device = burn_cuda::CudaDevice::new(*index);
                job.run::<Autodiff<burn_cuda::Cuda<f32, i32>>>(&device)
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(WorkloadError::Device(
                self.to_string(),
                "built without the `cuda` feature".into(),
            )),
            #[cfg(feature = "flex")]
            Device::FlexCpu => {
                let device = burn_flex::FlexDevice;
                job.run::<Autodiff<burn_flex::Flex<f32, i32>>>(&device)
            }
            #[cfg(not(feature = "flex"))]
            Device::FlexCpu => Err(WorkloadError::Device(
                self.to_string(),
                "built without the `flex` feature".into(),
            )),
        }
    }

    /// GPUs visible to this process: `CUDA_VISIBLE_DEVICES` if set, else the
    /// NVIDIA device nodes. Used to fork one worker per GPU.
    pub fn detect_gpus() -> Vec<Device> {
        if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES") {
            let count = visible.split(',').filter(|s| !s.trim().is_empty()).count();
            return (0..count).map(Device::Cuda).collect();
        }
        (0..64)
            .take_while(|i| std::path::Path::new(&format!("/dev/nvidia{i}")).exists())
            .map(Device::Cuda)
            .collect()
    }

    /// One device per worker process: `listed` if given, else every GPU
    /// visible to a CUDA build, else `cpu_workers` CPU workers.
    pub fn for_workers(listed: &[Device], cpu_workers: u32) -> Vec<Device> {
        if !listed.is_empty() {
            return listed.to_vec();
        }
        let gpus = if Self::cuda_available() {
            Self::detect_gpus()
        } else {
            Vec::new()
        };
        if gpus.is_empty() {
            (0..cpu_workers).map(|_| Device::Cpu).collect()
        } else {
            gpus
        }
    }

    pub fn cuda_available() -> bool {
        cfg!(feature = "cuda")
    }

    /// Whether this build can run jobs on the device here: `cuda:N` needs
    /// the `cuda` feature and, where GPUs are found, one numbered N. The
    /// daemons check their devices with it at start-up.
    pub fn check_available(&self) -> Result<(), String> {
        self.check_available_with(Self::cuda_available(), Self::detect_gpus().len())
    }

    fn check_available_with(&self, cuda_build: bool, gpus: usize) -> Result<(), String> {
        match self {
            Device::Cpu => Ok(()),
            Device::FlexCpu if !cfg!(feature = "flex") => Err(format!(
                "this binary was built without the `flex` feature: rebuild it with \
                 `--features flex` (`cargo build --release -p {} --features flex`), or use `cpu`",
                package_name()
            )),
            Device::FlexCpu => Ok(()),
            Device::Cuda(_) if !cuda_build => Err(format!(
                "this binary was built without the `cuda` feature: rebuild it with `--features \
                 cuda` (`cargo build --release -p {} --features cuda`, which needs the CUDA \
                 toolkit), or use `cpu`",
                package_name()
            )),
            // No GPU found may only mean device nodes we do not know: let
            // the backend decide then.
            Device::Cuda(index) if gpus > 0 && *index >= gpus => Err(format!(
                "no such GPU here: {gpus} found (cuda:0 to cuda:{}), per CUDA_VISIBLE_DEVICES \
                 or /dev/nvidiaN",
                gpus - 1
            )),
            Device::Cuda(_) => Ok(()),
        }
    }
}

/// The package of the running binary, for build instructions (`minerd` or
/// `validatord`).
fn package_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|name| matches!(name.as_str(), "minerd" | "validatord"))
        .unwrap_or_else(|| "minerd".into())
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::FlexCpu => f.write_str("flex-cpu"),
        }
    }
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => return Ok(Device::Cpu),
            "flex-cpu" => return Ok(Device::FlexCpu),
            _ => {}
        }
        s.strip_prefix("cuda:")
            .and_then(|i| i.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("device {s:?} must be `cpu`, `cuda:N` or `flex-cpu`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_devices_need_a_cuda_build_and_a_visible_gpu() {
        assert!(Device::Cpu.check_available_with(false, 0).is_ok());
        let e = Device::Cuda(0).check_available_with(false, 2).unwrap_err();
        assert!(
            e.starts_with("this binary was built without the `cuda` feature")
                && e.contains("--features cuda"),
            "{e}"
        );
        assert!(Device::Cuda(1).check_available_with(true, 2).is_ok());
        let e = Device::Cuda(2).check_available_with(true, 2).unwrap_err();
        assert!(
            e.starts_with("no such GPU here: 2 found (cuda:0 to cuda:1)"),
            "{e}"
        );
        // No GPU found: the device nodes may have other names; the backend decides.
        assert!(Device::Cuda(5).check_available_with(true, 0).is_ok());
        assert!(Device::Cpu.check_available().is_ok());
        if !Device::cuda_available() {
            assert!(Device::Cuda(0).check_available().is_err());
        }
    }
}
