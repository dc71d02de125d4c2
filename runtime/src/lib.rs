//! rnafm runtime: the part of rnafm that ships to workstations. It owns the file formats,
//! the model bundle, the guided flow sampler and the ONNX Runtime setup; it does not
//! depend on burn.

pub mod anchor;
pub mod anchor_refit;
pub mod atomic;
pub mod bundle;
pub mod bundle_members;
pub mod calibration;
pub mod checked_cache;
pub mod checkpoint;
pub mod cluster_means;
pub mod cpu;
pub mod ensemble;
pub mod error;
pub mod features;
pub mod genes;
pub mod graph_cache;
#[cfg(feature = "hdf5")]
pub mod h5;
pub mod kmeans;
pub mod limits;
pub mod logging;
pub mod manifest;
pub mod model_config;
pub mod model_spec;
pub mod normalization;
pub mod npy;
pub mod ort_env;
pub mod pathways;
pub mod reference_csv;
pub mod run;
pub mod sampler;
pub mod sigpipe;
pub mod slide;
pub mod slide_names;
pub mod stats;
pub mod training_metrics;
pub mod weights;

pub use error::{Error, Result};
