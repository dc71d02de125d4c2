//! The largest inputs and settings the tools accept, checked before anything is allocated
//! and shown in `--help`. They are far above real slides and runs, and low enough that a
//! forged header, a compressed bomb or a mistyped number fails at once with a clear line
//! instead of exhausting memory.

/// Tiles (rows) in one slide's feature file.
pub const MAX_TILES: usize = 500_000;
/// Values in one slide's feature file (tiles × feature width): 1 GiB as float32.
pub const MAX_FEATURE_VALUES: u64 = 1 << 28;
/// Draws per slide (`--samples`; each draw is one profile of every gene held in memory).
pub const MAX_SAMPLES: u32 = 10_000;
/// ONNX Runtime threads (`--threads`).
pub const MAX_THREADS: usize = 256;
