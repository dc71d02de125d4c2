//! Official RNA-FM weights as the PyTorch code writes them: a `torch.save` checkpoint
//! (`.pt`/`.pth`, a state_dict or a training checkpoint with `ema`/`model`) or a safetensors
//! state_dict, read without Python; and the one inference of the model they describe
//! (sizes from tensor shapes, genes and pathways from their files). `rnafm-train
//! import-official` and `rnafm-export --weights` both go through here.

pub mod official_spec;
pub mod torch_checkpoint;
pub mod weights_file;

pub use official_spec::{
    check_add_mask, infer_config, read_genes_and_pathways, spec_from_official,
};
pub use torch_checkpoint::WeightSet;
pub use weights_file::read_official_weights;
