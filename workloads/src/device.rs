//! Where a job runs: `cpu` (Burn ndarray) or `cuda:N` (Burn CUDA, behind the
//! `cuda` feature).

use std::fmt;
use std::str::FromStr;

use burn::backend::{Autodiff, NdArray};
use locus_protocol::pb;

use crate::{WorkloadError, mlp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    /// The backend label written into receipts. Replays on the same label
    /// must match bitwise; different labels use the manifest's tolerance.
    pub fn backend(&self) -> &'static str {
        match self {
            Device::Cpu => "burn-ndarray-f32",
            Device::Cuda(_) => "burn-cuda-f32",
        }
    }

    pub(crate) fn run_mlp(
        &self,
        cfg: &pb::MlpConfig,
        job: &pb::JobManifest,
        inputs: &[pb::TensorArtifact],
    ) -> Result<Vec<pb::Tensor>, WorkloadError> {
        match self {
            Device::Cpu => {
                let device = burn::backend::ndarray::NdArrayDevice::Cpu;
                mlp::execute::<Autodiff<NdArray<f32>>>(cfg, job, inputs, &device)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(index) => {
                let device = burn_cuda::CudaDevice::new(*index);
                mlp::execute::<Autodiff<burn_cuda::Cuda<f32, i32>>>(cfg, job, inputs, &device)
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(WorkloadError::Device(
                self.to_string(),
                "built without the `cuda` feature".into(),
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

    pub fn cuda_available() -> bool {
        cfg!(feature = "cuda")
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "cpu" {
            return Ok(Device::Cpu);
        }
        s.strip_prefix("cuda:")
            .and_then(|i| i.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("device {s:?} must be `cpu` or `cuda:N`"))
    }
}
