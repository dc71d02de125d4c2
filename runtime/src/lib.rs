//! rnafm runtime: the part of rnafm that ships to workstations. It owns the file formats,
//! the model bundle, the guided flow sampler and the ONNX Runtime setup; it does not
//! depend on burn.

pub mod atomic;
pub mod error;
pub mod genes;
pub mod model_config;
pub mod model_spec;
pub mod normalization;
pub mod pathways;
pub mod weights;

pub use error::{Error, Result};
