//! `import-official`: turns an official RNA-FM state_dict into an rnafm checkpoint
//! directory. Shapes give hidden width, depth, MLP ratio, clusters and feature width; the
//! head count cannot be read from shapes and is passed in.

use std::path::Path;

use burn::backend::Flex;
use rnafm_runtime::genes::GeneList;
use rnafm_runtime::model_config::{ModelConfig, TokenMode};
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::pathways::PathwaySet;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

use crate::checkpoint::CheckpointDir;
use crate::torch_checkpoint::WeightSet;
use crate::velocity_net::VelocityNet;

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

/// The hyper-parameters implied by the tensor shapes of `w`.
pub fn infer_config(
    w: &WeightMap,
    origin: &Path,
    genes: usize,
    heads: usize,
) -> Result<ModelConfig> {
    let shape = |name: &str| -> Result<&[usize]> {
        w.tensors
            .get(name)
            .map(|t| t.shape.as_slice())
            .ok_or_else(|| {
                Error::invalid(
                    origin,
                    format!("missing tensor {name:?}; not an RNA-FM state_dict?"),
                )
            })
    };
    let pe = shape("gene_embedder.gene_pathway_ebd")?;
    if pe.len() != 2 {
        return Err(Error::invalid(
            origin,
            "gene_embedder.gene_pathway_ebd is not 2-D",
        ));
    }
    let hidden = pe[1];
    let ci = shape("cluster_index_emb")?;
    if ci.len() != 2 {
        return Err(Error::invalid(origin, "cluster_index_emb is not 2-D"));
    }
    let depth = (0..)
        .take_while(|i| {
            w.tensors
                .contains_key(&format!("blocks.{i}.adaLN_modulation.1.weight"))
        })
        .count();
    let fc1 = shape("blocks.0.mlp.fc1.weight")?;
    let cfg = ModelConfig {
        hidden,
        depth,
        heads,
        graph_heads: 4,
        clusters: ci[0],
        feat_dim: ci[1],
        genes,
        mlp_ratio: fc1[0] / hidden.max(1),
        cond_drop: 0.1,
        graph_attention: w.tensors.contains_key("pathway_graph.norm1.weight"),
        tokens: TokenMode::Pathways,
    };
    cfg.validate(origin)?;
    Ok(cfg)
}

/// Gene list and pathways: the gene list gives the gene count; without one, the count is
/// the largest index in the pathway file + 1 and genes are named by index.
pub fn read_genes_and_pathways(
    pathways: &Path,
    genes: Option<&Path>,
) -> Result<(Vec<String>, PathwaySet)> {
    match genes {
        Some(g) => {
            let list = GeneList::read(g)?;
            let set = PathwaySet::read(pathways, Some(&list), list.len())?;
            Ok((list.symbols().to_vec(), set))
        }
        None => {
            let text = std::fs::read_to_string(pathways).map_err(|e| Error::io(pathways, e))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::invalid(
                    pathways,
                    format!("not JSON (a GMT file needs --genes): {e}"),
                )
            })?;
            let max = v
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
                .filter_map(|a| a.as_array())
                .flatten()
                .filter_map(|x| x.as_u64())
                .max()
                .ok_or_else(|| Error::invalid(pathways, "no gene index found"))?;
            let n = max as usize + 1;
            let set = PathwaySet::read_json(pathways, n)?;
            Ok(((0..n).map(|i| format!("gene_{i}")).collect(), set))
        }
    }
}

/// Imports `weights` into checkpoint directory `out`; returns the spec written.
pub fn import_official(
    weights: &Path,
    pathways: &Path,
    genes: Option<&Path>,
    heads: usize,
    set: WeightSet,
    out: &Path,
) -> Result<ModelSpec> {
    let map = read_official_weights(weights, set)?;
    let (symbols, set) = read_genes_and_pathways(pathways, genes)?;
    let config = infer_config(&map, weights, symbols.len(), heads)?;
    let p = map.get(
        "gene_embedder.gene_pathway_ebd",
        &[set.len(), config.hidden],
        weights,
    );
    if p.is_err() {
        return Err(Error::invalid(
            weights,
            format!(
                "the checkpoint has {} pathway tokens but {} lists {}",
                map.tensors["gene_embedder.gene_pathway_ebd"].shape[0],
                pathways.display(),
                set.len()
            ),
        ));
    }
    check_add_mask(&map, &set, weights)?;
    let spec = ModelSpec {
        config,
        genes: symbols,
        pathways: set,
        normalization: None,
    };
    let net = VelocityNet::<Flex>::from_weights(&spec, &map, weights, &Default::default())?;
    let w = net.to_weights();
    CheckpointDir::new(out).write(&spec, &w, &w)?;
    Ok(spec)
}

/// The checkpoint's stored graph mask must be the one the pathways give, else the pathway
/// order or file differs from training.
pub fn check_add_mask(map: &WeightMap, set: &PathwaySet, origin: &Path) -> Result<()> {
    if let Some(m) = map.tensors.get("pathway_graph.add_mask") {
        let ours = set.attention_mask();
        if m.data.len() != ours.len() || m.data.iter().zip(&ours).any(|(a, b)| a != b) {
            return Err(Error::invalid(
                origin,
                "pathway_graph.add_mask differs from the mask the pathway file gives: wrong pathway file or order",
            ));
        }
    }
    Ok(())
}
