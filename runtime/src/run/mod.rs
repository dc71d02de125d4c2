//! What `rnafm-run` does with a slide's samples: per-gene and per-pathway summaries, the
//! input-shift check, and the output files.

pub mod model;
pub mod outputs;
pub mod shift;
pub mod summary;
