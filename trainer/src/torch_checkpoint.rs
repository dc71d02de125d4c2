//! PyTorch `torch.save` checkpoints. burn-store's PyTorch reader needs zip 8 with its
//! compression codecs (a C zstd build) that this workspace does not carry, so `.pt` files
//! are refused with the one-line conversion that makes them readable.

use std::path::Path;

use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

pub fn read(path: &Path) -> Result<WeightMap> {
    Err(Error::invalid(
        path,
        "PyTorch .pt checkpoints are not read directly; convert with \
         `python -c \"import torch,safetensors.torch as s; s.save_file({k: v.float().contiguous() for k, v in torch.load('IN.pt', map_location='cpu').items()}, 'OUT.safetensors')\"` \
         and pass the .safetensors file",
    ))
}
