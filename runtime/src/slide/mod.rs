//! From a whole-slide image to the model's input: read the slide (`tiff_reader`), find the
//! tissue (`tissue`), lay and pick tiles (`tiling`), encode them with an ONNX model
//! (`encoder`), cluster and write the results (`extract`, `outputs`), and draw a review
//! thumbnail (`thumbnail`). `options` holds the flags and the one call both CLIs share.

pub mod encoder;
pub mod extract;
pub mod options;
pub mod outputs;
pub mod thumbnail;
pub mod tiff_reader;
pub mod tiling;
pub mod tissue;
