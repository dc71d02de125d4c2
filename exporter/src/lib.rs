//! rnafm exporter: writes the RNA-FM network as hand-built ONNX graphs and packs them with
//! the model's metadata into a self-checking `.rnafm` bundle.

pub mod backbone_graph;
pub mod bundle_export;
pub mod condition_graph;
pub mod embed_graph;
pub mod graphs;
pub mod heads_graph;
pub mod layers;
pub mod modulation_graph;
pub mod onnx_builder;
pub mod packing;
pub mod random_weights;
