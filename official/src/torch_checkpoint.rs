//! PyTorch `torch.save` checkpoints (`.pt`/`.pth`), read with burn-store's PyTorch reader
//! (zip + pickle, no Python). Accepted layouts: a plain state_dict, or a training
//! checkpoint dict holding `ema` and/or `model` (the official `val_best.pt`), or
//! `state_dict`/`model_state_dict`; a DataParallel `module.` prefix is dropped. Every
//! floating-point (and bool) tensor is read as f32; anything else in the file (optimiser
//! state, step counters, args) is ignored.

use std::collections::HashMap;
use std::path::Path;

use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;
use burn_tensor::DType;
use rnafm_runtime::weights::{Tensor, WeightMap};
use rnafm_runtime::{Error, Result};

/// Which weight set of a training checkpoint to take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightSet {
    /// `ema` when the checkpoint holds it, else `model` (the official code samples with EMA).
    #[default]
    Ema,
    /// `model`: the raw optimised weights.
    Raw,
}

/// Top-level keys that hold a state_dict, in order of preference.
fn candidates(set: WeightSet) -> &'static [&'static str] {
    match set {
        WeightSet::Ema => &["ema", "model", "state_dict", "model_state_dict"],
        WeightSet::Raw => &["model", "state_dict", "model_state_dict"],
    }
}

/// Reads the state_dict of the PyTorch checkpoint at `path` (see the module doc).
pub fn read(path: &Path, set: WeightSet) -> Result<WeightMap> {
    refuse_big_endian(path)?;
    let reader = PytorchReader::new(path).map_err(|e| {
        Error::invalid(
            path,
            format!(
                "not a readable PyTorch checkpoint: {}",
                e.to_string().lines().next().unwrap_or_default()
            ),
        )
    })?;
    select(reader.into_tensors(), set, path)
}

/// A torch.save archive records the byte order of its tensor data; burn-store reads the
/// data as little-endian whatever it says, so a big-endian file would give byte-swapped
/// weights. Refused instead (legacy non-zip files carry no such record).
fn refuse_big_endian(path: &Path) -> Result<()> {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(()); // the reader reports it
    };
    let Ok(mut zip) = zip::ZipArchive::new(file) else {
        return Ok(());
    };
    let Some(name) = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n == "byteorder" || n.ends_with("/byteorder"))
    else {
        return Ok(());
    };
    let mut order = String::new();
    if let Ok(f) = zip.by_name(&name) {
        let _ = f.take(16).read_to_string(&mut order);
    }
    if order.trim() == "big" {
        return Err(Error::invalid(
            path,
            "a big-endian torch.save (its byteorder record says \"big\"): save the state_dict again on a little-endian machine",
        ));
    }
    Ok(())
}

/// Picks the state_dict out of the flattened (dot-joined) tensor names of a checkpoint.
fn select(
    all: HashMap<String, TensorSnapshot>,
    set: WeightSet,
    origin: &Path,
) -> Result<WeightMap> {
    if all.is_empty() {
        return Err(Error::invalid(origin, "the checkpoint holds no tensors"));
    }
    let has_prefix = |p: &str| all.keys().any(|k| k.starts_with(&format!("{p}.")));
    // A plain state_dict has the model's own names; only look for a nested state_dict
    // when those are absent.
    const PROBE: &str = "gene_embedder.gene_pathway_ebd";
    let plain = all.contains_key(PROBE) || all.contains_key(&format!("module.{PROBE}"));
    let prefix = if plain {
        None
    } else {
        match candidates(set).iter().find(|p| has_prefix(p)) {
            Some(p) => Some(*p),
            None if set == WeightSet::Raw && has_prefix("ema") => {
                return Err(Error::invalid(
                    origin,
                    "the checkpoint holds only `ema` weights, no `model` (drop --raw)",
                ));
            }
            None => None,
        }
    };
    if let Some(p) = prefix {
        tracing::info!("{}: reading the `{p}` state_dict", origin.display());
    }
    let mut map = WeightMap::new();
    for (name, snap) in &all {
        let name = match prefix {
            Some(p) => match name.strip_prefix(p).and_then(|n| n.strip_prefix('.')) {
                Some(n) => n,
                None => continue,
            },
            None => name.as_str(),
        };
        let name = name.strip_prefix("module.").unwrap_or(name);
        if let Some(t) = to_f32(name, snap, origin)? {
            map.insert(name.to_string(), t);
        }
    }
    Ok(map)
}

/// Float and bool tensors as f32 (as the safetensors reader does); `None` for integer
/// tensors (step counters and the like are not model weights).
fn to_f32(name: &str, snap: &TensorSnapshot, origin: &Path) -> Result<Option<Tensor>> {
    let float = matches!(
        snap.dtype,
        DType::F64 | DType::F32 | DType::Flex32 | DType::F16 | DType::BF16 | DType::Bool(_)
    );
    if !float {
        return Ok(None);
    }
    let bad = |e: String| Error::invalid(origin, format!("tensor {name:?}: {e}"));
    let data = snap.to_data().map_err(|e| bad(format!("{e:?}")))?;
    let data = if matches!(snap.dtype, DType::Bool(_)) {
        data.iter::<bool>().map(f32::from).collect::<Vec<f32>>()
    } else {
        data.convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| bad(format!("{e:?}")))?
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!("non-finite value at element {i}")));
    }
    Ok(Some(Tensor::new(snap.shape.to_vec(), data)))
}
