//! Which burn backend a training job runs on: the CPU (burn-flex) or, in builds with the
//! `cuda` feature, CUDA device 0. The one place that dispatches; training, the regression
//! baseline and the step benchmark are each a [`BackendJob`].

use burn::backend::{Autodiff, Flex};

use crate::fused::TrainBackend;

/// Where to train (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainDevice {
    /// CUDA when this build has it, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// A job written once for any training backend (closures cannot be generic over it).
pub trait BackendJob {
    type Output;
    /// Runs on backend `B` at `device`; `backend` names it for reports.
    fn run<B: TrainBackend>(self, device: &B::Device, backend: &'static str) -> Self::Output;
}

/// Runs `job` on the backend `choice` asks for.
pub fn run_on<J: BackendJob>(choice: TrainDevice, job: J) -> J::Output {
    #[cfg(feature = "cuda")]
    if choice != TrainDevice::Cpu {
        tracing::info!("running on CUDA device 0");
        return job.run::<Autodiff<burn::backend::Cuda>>(&Default::default(), "cuda");
    }
    #[cfg(not(feature = "cuda"))]
    match choice {
        TrainDevice::Cuda => tracing::warn!("built without the cuda feature; running on the CPU"),
        TrainDevice::Auto => {
            tracing::info!("running on the CPU (build with --features cuda for GPUs)")
        }
        TrainDevice::Cpu => {}
    }
    job.run::<Autodiff<Flex>>(&Default::default(), "flex (CPU)")
}
