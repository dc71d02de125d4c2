//! Which burn backend a training job runs on: the CPU (burn-flex) or, in builds with the
//! `cuda` feature, CUDA device 0. The one place that dispatches; training, the regression
//! baseline and the step benchmark are each a [`BackendJob`].
//!
//! `--device cuda` never falls back: it runs on a GPU or fails with one line saying what is
//! missing (this build has no CUDA, no driver, no GPU, no NVRTC). `--device auto` uses the
//! GPU when all of that is there and otherwise the CPU, warning once when a GPU is present
//! but unusable.

use burn::backend::{Autodiff, Flex};
use rnafm_runtime::{Error, Result};

use crate::fused::TrainBackend;

/// Where to train (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainDevice {
    /// CUDA when this build has it and a GPU works, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// The backend a job really runs on, once [`resolve`] has checked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    /// CUDA device 0 (only in builds with the `cuda` feature).
    Cuda,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "flex (CPU)",
            Backend::Cuda => "cuda",
        }
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_BUILD: bool = cfg!(feature = "cuda");

/// Settles `choice` into a backend, or says in one line why CUDA cannot be used.
pub fn resolve(choice: TrainDevice) -> Result<Backend> {
    match choice {
        TrainDevice::Cpu => Ok(Backend::Cpu),
        TrainDevice::Cuda => match cuda_status() {
            Ok(n) => {
                tracing::info!("running on CUDA device 0 of {n}");
                Ok(Backend::Cuda)
            }
            Err(why) => Err(Error::Runtime(format!("--device cuda: {why}"))),
        },
        TrainDevice::Auto => match cuda_status() {
            Ok(n) => {
                tracing::info!("running on CUDA device 0 of {n}");
                Ok(Backend::Cuda)
            }
            Err(why) => {
                if CUDA_BUILD && cuda_probe::driver_present() {
                    tracing::warn!(
                        "a GPU driver is present but CUDA is unusable ({why}); training on the CPU"
                    );
                } else {
                    tracing::info!("training on the CPU ({why})");
                }
                Ok(Backend::Cpu)
            }
        },
    }
}

/// The number of CUDA devices this build can train on, or why none.
fn cuda_status() -> std::result::Result<usize, String> {
    if !CUDA_BUILD {
        return Err(
            "this rnafm-train was built without CUDA (build it with `cargo build --release --features cuda`)"
                .into(),
        );
    }
    cuda_probe::probe()
}

/// A job written once for any training backend (closures cannot be generic over it).
pub trait BackendJob {
    type Output;
    /// Runs on backend `B` at `device`; `backend` names it for reports.
    fn run<B: TrainBackend>(self, device: &B::Device, backend: &'static str) -> Self::Output;
}

/// Runs `job` on `backend` (from [`resolve`]).
pub fn run_on<J: BackendJob>(backend: Backend, job: J) -> J::Output {
    #[cfg(feature = "cuda")]
    if backend == Backend::Cuda {
        return job.run::<Autodiff<burn::backend::Cuda>>(&Default::default(), backend.as_str());
    }
    debug_assert_eq!(
        backend,
        Backend::Cpu,
        "resolve() gives CUDA only in CUDA builds"
    );
    job.run::<Autodiff<Flex>>(&Default::default(), Backend::Cpu.as_str())
}

#[cfg(not(feature = "cuda"))]
mod cuda_probe {
    pub fn probe() -> Result<usize, String> {
        unreachable!("cuda_status checks CUDA_BUILD first")
    }
    pub fn driver_present() -> bool {
        false
    }
}

/// Finds the CUDA driver and NVRTC before burn does. burn's CUDA backend (through cudarc)
/// panics when a library is missing and looks only in the loader's path; GPU images keep
/// them elsewhere (`/usr/local/nvidia`, the `nvidia-*` Python wheels). Loading them here by
/// full path, globally, lets cudarc's later load by name find the same library, and turns
/// "missing" into one line naming what is missing and where we looked.
#[cfg(feature = "cuda")]
mod cuda_probe {
    use std::path::{Path, PathBuf};

    const DRIVER: &[&str] = &["libcuda.so.1", "libcuda.so"];
    const NVRTC: &[&str] = &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

    /// Folders searched after the loader's own path: `RNAFM_CUDA_LIB_DIRS` (colon-separated),
    /// the driver and toolkit folders of common images, and the `lib` folders of `nvidia-*`
    /// wheels in Python environments under `/opt`, `/usr` and `/usr/local`.
    pub fn search_dirs() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::env::var("RNAFM_CUDA_LIB_DIRS")
            .unwrap_or_default()
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        for d in [
            "/usr/local/nvidia/lib64",
            "/usr/local/nvidia/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/targets/x86_64-linux/lib",
        ] {
            dirs.push(d.into());
        }
        for site in python_site_dirs() {
            let nv = site.join("nvidia");
            for sub in sorted_children(&nv) {
                // cu13 wheels: nvidia/cu13/lib; older ones: nvidia/<name>/lib.
                dirs.push(sub.join("lib"));
            }
        }
        dirs.retain(|d| d.is_dir());
        dirs
    }

    /// `site-packages` / `dist-packages` folders of Python environments in the usual places.
    fn python_site_dirs() -> Vec<PathBuf> {
        let mut prefixes: Vec<PathBuf> = vec!["/usr".into(), "/usr/local".into()];
        for opt in sorted_children(Path::new("/opt")) {
            prefixes.push(opt.join(".venv"));
            prefixes.push(opt.clone());
        }
        if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
            prefixes.push(v.into());
        }
        let mut out = Vec::new();
        for p in prefixes {
            for lib in sorted_children(&p.join("lib")) {
                let name = lib.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with("python3") {
                    out.push(lib.join("site-packages"));
                    out.push(lib.join("dist-packages"));
                }
            }
        }
        out.push("/usr/lib/python3/dist-packages".into());
        out
    }

    fn sorted_children(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Loads the first of `names` from the loader's path or else from `dirs`, globally and
    /// for the life of the process; the path it came from, or None.
    fn load_global(names: &[&str], dirs: &[PathBuf]) -> Option<String> {
        use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
        let open = |what: &str| {
            // SAFETY: loading a system library runs its initialisers; the driver's and
            // NVRTC's are what cudarc would run anyway.
            unsafe { Library::open(Some(what), RTLD_NOW | RTLD_GLOBAL) }.ok()
        };
        for name in names {
            if let Some(lib) = open(name) {
                std::mem::forget(lib);
                return Some((*name).to_string());
            }
        }
        for dir in dirs {
            for name in names {
                let p = dir.join(name);
                if p.is_file()
                    && let Some(lib) = open(&p.to_string_lossy())
                {
                    std::mem::forget(lib);
                    return Some(p.display().to_string());
                }
            }
        }
        None
    }

    fn where_looked(dirs: &[PathBuf]) -> String {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        if shown.is_empty() {
            "the loader's path".into()
        } else {
            format!("the loader's path and {}", shown.join(", "))
        }
    }

    pub fn driver_present() -> bool {
        Path::new("/proc/driver/nvidia").exists() || load_global(DRIVER, &search_dirs()).is_some()
    }

    /// Device count, after making sure the driver and NVRTC load and a device answers.
    pub fn probe() -> Result<usize, String> {
        let dirs = search_dirs();
        let Some(driver) = load_global(DRIVER, &dirs) else {
            return Err(format!(
                "no GPU: the NVIDIA driver library (libcuda.so.1) is not in {}",
                where_looked(&dirs)
            ));
        };
        tracing::debug!("CUDA driver: {driver}");
        cudarc::driver::result::init()
            .map_err(|e| format!("the NVIDIA driver ({driver}) did not start: {e}"))?;
        let n = cudarc::driver::result::device::get_count()
            .map_err(|e| format!("the NVIDIA driver ({driver}) cannot count devices: {e}"))?;
        if n < 1 {
            return Err(format!(
                "no GPU: the NVIDIA driver ({driver}) sees no device"
            ));
        }
        let Some(nvrtc) = load_global(NVRTC, &dirs) else {
            return Err(format!(
                "NVRTC (libnvrtc.so.13), which compiles burn's CUDA kernels, is not in {}; install the CUDA toolkit or the nvidia-cuda-nvrtc wheel, or name its lib folder in RNAFM_CUDA_LIB_DIRS",
                where_looked(&dirs)
            ));
        };
        tracing::debug!("NVRTC: {nvrtc}");
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert_eq!(resolve(TrainDevice::Cpu).unwrap(), Backend::Cpu);
    }

    /// Without a usable GPU (every CI machine), `cuda` fails in one line and `auto` runs on
    /// the CPU; with one, both pick CUDA.
    #[test]
    fn cuda_fails_in_one_line_or_runs() {
        match cuda_status() {
            Err(why) => {
                let e = resolve(TrainDevice::Cuda).unwrap_err().to_string();
                assert!(e.starts_with("--device cuda: "), "{e}");
                assert!(e.contains(&why) && !e.contains('\n'), "{e}");
                assert_eq!(resolve(TrainDevice::Auto).unwrap(), Backend::Cpu);
            }
            Ok(_) => {
                assert_eq!(resolve(TrainDevice::Cuda).unwrap(), Backend::Cuda);
                assert_eq!(resolve(TrainDevice::Auto).unwrap(), Backend::Cuda);
            }
        }
    }
}
