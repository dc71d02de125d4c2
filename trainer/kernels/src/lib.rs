//! CPU kernels behind the trainer's fused ops, on contiguous row-major f32 slices: the
//! forward and backward passes of tanh-GELU, LayerNorm, adaLN scale/shift, multi-head
//! attention from a fused projection, and per-pathway output heads. No burn types: the
//! trainer wraps them as burn ops (`rnafm_trainer::fused`).
//!
//! A crate of its own so that it is always built with full optimisation (see the
//! workspace's `[profile.dev.package.rnafm-kernels]`): the tests train real models.

pub mod attention;
pub mod elementwise;
pub mod math;
pub mod segment;
mod sgemm;
