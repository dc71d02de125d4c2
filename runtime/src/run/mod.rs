//! What `rnafm-run` does: the per-slide pipeline, the loaded model, the input-shift check,
//! per-gene and per-pathway summaries of the draws, spatial maps, and the output files.

pub mod map_outputs;
pub mod maps;
pub mod model;
pub mod outputs;
pub mod pipeline;
pub mod shift;
pub mod summary;
