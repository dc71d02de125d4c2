//! Which reader an official weights file needs: safetensors, or PyTorch's `torch.save`
//! format, by extension or, failing that, by magic bytes.

use std::path::Path;

use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

use crate::torch_checkpoint::WeightSet;

/// Reads an official state_dict: safetensors, or a `torch.save` checkpoint (`.pt`/`.pth`,
/// or any file that is a zip or pickle rather than safetensors); `set` picks EMA or raw
/// weights of a training checkpoint.
pub fn read_official_weights(path: &Path, set: WeightSet) -> Result<WeightMap> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let torch = match ext.as_str() {
        "pt" | "pth" | "bin" | "ckpt" | "tar" => true,
        "safetensors" => false,
        _ => is_torch_file(path)?,
    };
    if torch {
        crate::torch_checkpoint::read(path, set)
    } else {
        WeightMap::read_safetensors(path)
    }
}

/// Zip (torch.save since PyTorch 1.6) or pickle (legacy torch.save) magic bytes.
fn is_torch_file(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    Ok(n >= 2 && (head.starts_with(b"PK") || head[0] == 0x80))
}
