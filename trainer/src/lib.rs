//! rnafm trainer: the RNA-FM velocity network in burn, exact to the official PyTorch
//! model, its weight mapping to official names, the guided Euler sampler and
//! flow-matching training with patient-level cross-validation.

pub mod allocator;
pub mod anchor_fit;
pub mod anchor_refit;
pub mod bench;
pub mod burn_sample;
pub mod dataset;
pub mod device;
pub mod dit_block;
pub mod ema;
pub mod fused;
pub mod gene_embedding;
pub mod grad_clip;
pub mod heads;
pub mod import;
pub mod init;
pub mod layers;
pub mod pathway_graph;
pub mod preset;
pub mod recipe;
pub mod regression;
pub mod sampler;
pub mod slide_encoder;
pub mod splits;
pub mod timestep;
pub mod train;
pub mod velocity_net;
pub mod weight_io;
