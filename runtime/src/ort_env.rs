//! ONNX Runtime setup: finds the shared library (`ort` is built with `load-dynamic`), makes
//! the one process-wide environment, and creates sessions on the device the user asked for,
//! saying plainly which device really runs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::error::{Error, Result};
use crate::graph_cache::{GraphCache, Mapped};

#[cfg(target_os = "windows")]
const LIB_NAME: &str = "onnxruntime.dll";
#[cfg(target_os = "macos")]
const LIB_NAME: &str = "libonnxruntime.dylib";
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
const LIB_NAME: &str = "libonnxruntime.so";

/// The folder `scripts/setup.sh` unpacks ONNX Runtime into, relative to the repository root.
const SETUP_DIR: &str = ".ort";

const SETUP_HINT: &str = "run scripts/setup.sh (or scripts/setup.sh --cuda for NVIDIA GPUs), or set ORT_DYLIB_PATH to libonnxruntime";

/// The device the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when it works, else CPU.
    #[default]
    Auto,
    /// CUDA or an error.
    Cuda,
    Cpu,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => Err(format!("unknown device `{other}` (auto, cuda or cpu)")),
        }
    }
}

/// The device sessions actually run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the ONNX Runtime library is looked for, in order: `ORT_DYLIB_PATH`, next to the
/// executable, `.ort/` in any ancestor of the executable (a checkout's `target/…/rnafm-run`),
/// `.ort/` of the checkout this crate was built from.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.join(LIB_NAME));
        }
        for anc in exe.ancestors().skip(1) {
            out.push(anc.join(SETUP_DIR).join(LIB_NAME));
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(root) = built_from.parent() {
        out.push(root.join(SETUP_DIR).join(LIB_NAME));
    }
    out
}

/// The ONNX Runtime library to load. `ORT_DYLIB_PATH`, when set, is taken as is (a wrong
/// path is an error rather than a silent fall-through).
pub fn locate_library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Runtime(format!(
                "ORT_DYLIB_PATH={} is not a file; {SETUP_HINT}",
                p.display()
            )))
        };
    }
    library_candidates()
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Runtime(format!("ONNX Runtime library not found; {SETUP_HINT}")))
}

/// The environment, the library it came from, and the size of its shared thread pool.
struct Env {
    env: Environment,
    path: PathBuf,
    pool_threads: usize,
}

static ENV: OnceLock<std::result::Result<Env, String>> = OnceLock::new();

/// Whether idle pool threads spin (RNAFM_ORT_SPIN=0 turns it off).
fn spinning() -> bool {
    std::env::var("RNAFM_ORT_SPIN").as_deref() != Ok("0")
}

/// The process-wide ONNX Runtime environment (ONNX Runtime allows one per process). The
/// first call settles its shared intra-op thread pool of `threads` threads, which every CPU
/// session of that thread count uses.
///
/// Why one shared pool: with a pool per session, the three per-step graphs each own threads
/// that keep spinning after their session's run, and on 2 cores they take the CPU from the
/// next graph's threads: one sample at the paper config sampled in 3.54 s that way, 2.19 s
/// with one shared spinning pool and 2.31 s with per-session pools that do not spin (ORT
/// 1.31.1, 2 threads, measured).
pub fn environment_with(threads: usize) -> Result<&'static Environment> {
    let made = ENV.get_or_init(|| {
        let path = locate_library().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e}; {SETUP_HINT}",
                path.display()
            )
        })?;
        let pool_threads = threads.max(1);
        let pool = ort::environment::GlobalThreadPoolOptions::default()
            .with_intra_threads(pool_threads)
            .and_then(|o| o.with_inter_threads(1))
            .and_then(|o| o.with_spin_control(spinning()))
            .map_err(|e| format!("ONNX Runtime thread pool: {e}"))?;
        let env = builder
            .with_name("rnafm")
            .with_global_thread_pool(pool)
            .build()
            .map_err(|e| format!("ONNX Runtime at {}: {e}", path.display()))?;
        tracing::debug!(library = %path.display(), pool_threads, "ONNX Runtime loaded");
        Ok(Env {
            env,
            path,
            pool_threads,
        })
    });
    match made {
        Ok(e) => Ok(&e.env),
        Err(msg) => Err(Error::Runtime(msg.clone())),
    }
}

/// [`environment_with`] one thread per core.
pub fn environment() -> Result<&'static Environment> {
    environment_with(default_threads())
}

/// Threads of the environment's shared pool (after [`environment_with`] succeeded).
fn pool_threads() -> Option<usize> {
    match ENV.get() {
        Some(Ok(e)) => Some(e.pool_threads),
        _ => None,
    }
}

/// The library the environment was loaded from (after [`environment`] succeeded).
pub fn library_path() -> Option<&'static Path> {
    match ENV.get() {
        Some(Ok(e)) => Some(e.path.as_path()),
        _ => None,
    }
}

/// How sessions are made.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    pub device: DeviceChoice,
    /// Intra-op threads; 0 = one per core.
    pub threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            device: DeviceChoice::Auto,
            threads: 0,
        }
    }
}

/// Cores available to this process.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Creates sessions for one model on one device. The device is settled by the first session
/// (so `auto` does not end up with graphs of one model on different devices).
pub struct SessionFactory {
    options: SessionOptions,
    device: Option<Device>,
}

impl SessionFactory {
    pub fn new(options: SessionOptions) -> Result<Self> {
        let threads = match options.threads {
            0 => default_threads(),
            n => n,
        };
        environment_with(threads)?;
        let device = match options.device {
            DeviceChoice::Cpu => Some(Device::Cpu),
            DeviceChoice::Cuda => {
                if !ort::ep::CUDA::is_available().unwrap_or(false) {
                    return Err(Error::Runtime(format!(
                        "--device cuda: the ONNX Runtime at {} is a CPU build; run scripts/setup.sh --cuda",
                        library_path().map_or("?".into(), |p| p.display().to_string())
                    )));
                }
                preload_cuda_libraries();
                None
            }
            DeviceChoice::Auto => {
                if ort::ep::CUDA::is_available().unwrap_or(false) {
                    preload_cuda_libraries();
                    None
                } else {
                    let lib = library_path().map_or("?".into(), |p| p.display().to_string());
                    if nvidia_driver_present() {
                        // The user has a GPU and probably expects it to be used: say once why not.
                        tracing::warn!(
                            "an NVIDIA GPU is present but the ONNX Runtime at {lib} is a CPU build; running on the CPU (scripts/setup.sh --cuda installs the GPU build)"
                        );
                    } else {
                        tracing::info!("ONNX Runtime at {lib} is a CPU build; running on the CPU");
                    }
                    Some(Device::Cpu)
                }
            }
        };
        Ok(SessionFactory { options, device })
    }

    /// The device in use, once known.
    pub fn device(&self) -> Option<Device> {
        self.device
    }

    pub fn threads(&self) -> usize {
        if self.options.threads == 0 {
            default_threads()
        } else {
            self.options.threads
        }
    }

    /// A session for the ONNX graph `bytes`; `name` (a bundle member) is used in errors.
    pub fn session(&mut self, bytes: &[u8], name: &str) -> Result<Session> {
        match self.device {
            Some(Device::Cpu) => self.build(bytes, name, false),
            Some(Device::Cuda) => self.build(bytes, name, true),
            None => match self.build(bytes, name, true) {
                Ok(s) => {
                    self.device = Some(Device::Cuda);
                    Ok(s)
                }
                Err(e) if self.options.device == DeviceChoice::Auto => {
                    tracing::info!("CUDA unavailable ({e}); running on CPU");
                    self.device = Some(Device::Cpu);
                    self.build(bytes, name, false)
                }
                Err(e) => Err(Error::Runtime(format!(
                    "--device cuda: {e}{}",
                    missing_cuda_libraries()
                ))),
            },
        }
    }

    /// A session on the device an earlier [`SessionFactory::session`] settled; takes `&self`
    /// so that several threads can build sessions at once.
    pub fn settled_session(&self, bytes: &[u8], name: &str) -> Result<Session> {
        match self.device {
            Some(device) => self.build(bytes, name, device == Device::Cuda),
            None => Err(Error::Runtime(format!(
                "{name}: the device is not settled yet (build one session first)"
            ))),
        }
    }

    /// A CPU session for the ONNX graph `bytes` that is the bundle member with this sha256
    /// (already checked), through the [`GraphCache`]: the saved ORT-format graph used in
    /// place when there is one (its map goes to `mapped`, which must outlive the session),
    /// else built from `bytes` and saved. Off the CPU as [`SessionFactory::settled_session`].
    /// Returns whether the saved graph was used.
    pub fn cached_session(
        &self,
        bytes: &[u8],
        name: &str,
        sha256: &str,
        cache: &GraphCache,
        mapped: &mut Mapped,
    ) -> Result<(Session, bool)> {
        if self.device != Some(Device::Cpu) {
            return self.settled_session(bytes, name).map(|s| (s, false));
        }
        if let Some(map) = cache.lookup(sha256) {
            match self.build_with(&map, name, false, Source::OrtInPlace) {
                Ok(s) => {
                    // Building the session read every page, those of weights it packed
                    // into its own copy too; handing them back keeps them out of this
                    // process's memory (the weights used in place fault back in, from the
                    // page cache, when a run reads them).
                    crate::graph_cache::drop_pages(&map);
                    mapped.push(map);
                    return Ok((s, true));
                }
                Err(e) => tracing::debug!("{name}: saved graph not usable ({e}); rebuilding it"),
            }
        }
        match cache.save(sha256, |tmp| {
            self.build_with(bytes, name, false, Source::OnnxSavingTo(tmp))
        }) {
            Ok(s) => Ok((s, false)),
            Err(e) => {
                tracing::debug!("{name}: graph not saved to the cache ({e})");
                self.settled_session(bytes, name).map(|s| (s, false))
            }
        }
    }

    fn build(&self, bytes: &[u8], name: &str, cuda: bool) -> Result<Session> {
        self.build_with(bytes, name, cuda, Source::Onnx)
    }

    fn build_with(&self, bytes: &[u8], name: &str, cuda: bool, source: Source) -> Result<Session> {
        let fail = |e: String| Error::Runtime(format!("{name}: {e}"));
        let env = environment_with(self.threads())?;
        // A graph saved for reuse is optimised at the extended level: the all level adds
        // hardware-specific layouts that ONNX Runtime will not promise to load elsewhere.
        let level = match source {
            Source::Onnx => GraphOptimizationLevel::Level3,
            Source::OnnxSavingTo(_) | Source::OrtInPlace => GraphOptimizationLevel::Level2,
        };
        let mut b = Session::builder(env)
            .map_err(|e| fail(e.to_string()))?
            .with_optimization_level(level)
            .map_err(|e| fail(e.to_string()))?
            // Same input → same output, run to run (ORT otherwise may pick kernels by timing).
            .with_deterministic_compute(true)
            .map_err(|e| fail(e.to_string()))?;
        if pool_threads() != Some(self.threads()) {
            // Another thread count than the shared pool's (a second model in one process):
            // a pool of its own, not spinning, so that it does not starve the shared one.
            b = b
                .with_independent_thread_pool()
                .map_err(|e| fail(e.to_string()))?
                .with_intra_threads(self.threads())
                .map_err(|e| fail(e.to_string()))?
                .with_intra_op_spinning(false)
                .map_err(|e| fail(e.to_string()))?;
        }
        // RNAFM_ORT_PROFILE=PREFIX writes ONNX Runtime's per-node profile of each session to
        // PREFIX-<graph>_<time>.json (for finding which nodes dominate).
        if let Some(prefix) = std::env::var_os("RNAFM_ORT_PROFILE") {
            let stem = name.rsplit('/').next().unwrap_or(name).replace(".onnx", "");
            let file = format!("{}-{stem}", prefix.to_string_lossy());
            b = b.with_profiling(file).map_err(|e| fail(e.to_string()))?;
        }
        if cuda {
            // Without error_on_failure ORT silently falls back to CPU.
            b = b
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| fail(e.to_string()))?;
        }
        let entries: &[(&str, &str)] = match source {
            Source::Onnx => &[],
            Source::OnnxSavingTo(path) => {
                b = b
                    .with_optimized_model_path(path)
                    .map_err(|e| fail(e.to_string()))?;
                &[("session.save_model_format", "ORT")]
            }
            // The session keeps pointers into `bytes` (weights included) instead of copying
            // them; `cached_session`'s caller keeps the map alive.
            Source::OrtInPlace => &[
                ("session.load_model_format", "ORT"),
                ("session.use_ort_model_bytes_directly", "1"),
                ("session.use_ort_model_bytes_for_initializers", "1"),
            ],
        };
        for (key, value) in entries {
            b = b
                .with_config_entry(key, value)
                .map_err(|e| fail(e.to_string()))?;
        }
        b.commit_from_memory(bytes).map_err(|e| fail(e.to_string()))
    }
}

/// What a session is built from.
enum Source<'p> {
    /// ONNX protobuf, optimised at every load.
    Onnx,
    /// ONNX protobuf, the optimised graph saved in ORT format to this path.
    OnnxSavingTo(&'p Path),
    /// A saved ORT-format graph, used in place.
    OrtInPlace,
}

/// Whether the NVIDIA kernel driver is loaded (a GPU is there, usable or not).
pub fn nvidia_driver_present() -> bool {
    Path::new("/proc/driver/nvidia/version").exists() || Path::new("/dev/nvidiactl").exists()
}

/// Libraries the CUDA build of ONNX Runtime 1.2x needs (CUDA 13, cuDNN 9), per ort's list.
fn cuda_library_names() -> impl Iterator<Item = &'static str> {
    ort::ep::cuda::CUDA_DYLIBS
        .iter()
        .chain(ort::ep::cuda::CUDNN_DYLIBS)
        .copied()
}

/// `lib` folders of NVIDIA's PyPI wheels (`nvidia-cublas`, `nvidia-cudnn-cu13`, …) in the usual
/// Python prefixes; ORT does not search them itself.
fn nvidia_wheel_dirs() -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        prefixes.push(PathBuf::from(v));
    }
    prefixes.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    if let Some(h) = std::env::var_os("HOME") {
        prefixes.push(PathBuf::from(h).join(".local"));
    }
    prefixes.push("/usr/local".into());
    prefixes.push("/usr".into());
    let mut dirs = Vec::new();
    for prefix in prefixes {
        let Ok(libs) = std::fs::read_dir(prefix.join("lib")) else {
            continue;
        };
        for py in libs.flatten() {
            if !py.file_name().to_string_lossy().starts_with("python3") {
                continue;
            }
            for sp in ["site-packages", "dist-packages"] {
                let nvidia = py.path().join(sp).join("nvidia");
                let Ok(pkgs) = std::fs::read_dir(&nvidia) else {
                    continue;
                };
                for pkg in pkgs.flatten() {
                    let lib = pkg.path().join("lib");
                    if lib.is_dir() {
                        dirs.push(lib);
                    }
                }
            }
        }
    }
    dirs
}

/// Loads CUDA/cuDNN from NVIDIA's wheels when present, so the CUDA EP finds them without
/// LD_LIBRARY_PATH. Libraries not found there are left to the system search path.
fn preload_cuda_libraries() {
    let dirs = nvidia_wheel_dirs();
    for name in cuda_library_names() {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            match ort::util::preload_dylib(&p) {
                Ok(()) => tracing::debug!(library = %p.display(), "preloaded"),
                Err(e) => tracing::debug!(library = %p.display(), "preload failed: {e}"),
            }
        }
    }
}

/// "; missing: libcublas.so.13, …" for the CUDA libraries that cannot be loaded, or "".
fn missing_cuda_libraries() -> String {
    let missing: Vec<&str> = cuda_library_names()
        .filter(|n| ort::util::preload_dylib(*n).is_err())
        .collect();
    if missing.is_empty() {
        String::new()
    } else {
        format!(
            "; cannot load {} (CUDA 13 + cuDNN 9: install the CUDA 13 toolkit and cuDNN 9, or the PyPI wheels nvidia-cublas, nvidia-cuda-runtime, nvidia-cuda-nvrtc, nvidia-curand, nvidia-cufft, nvidia-cudnn-cu13 into .venv)",
            missing.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choice_parses_and_rejects() {
        assert_eq!("CPU".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda));
        assert!("tpu".parse::<DeviceChoice>().unwrap_err().contains("tpu"));
    }

    #[test]
    fn candidates_include_checkout_setup_folder() {
        let c = library_candidates();
        let want = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join(".ort")
            .join(LIB_NAME);
        assert!(c.contains(&want), "{c:?}");
    }
}
