//! The model that official weights describe. Shapes give the hidden width, depth, MLP ratio,
//! clusters and feature width; the pathway graph block's presence gives graph attention; the
//! head count cannot be read from shapes and is passed in. Genes and pathways come from their
//! files and must agree with the weights (token count, stored graph mask).

use std::path::Path;

use rnafm_runtime::genes::GeneList;
use rnafm_runtime::model_config::ModelConfig;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::pathways::PathwaySet;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

/// The hyper-parameters implied by the tensor shapes of `w` (`origin` names it in errors).
pub fn infer_config(
    w: &WeightMap,
    origin: &Path,
    genes: usize,
    heads: usize,
) -> Result<ModelConfig> {
    let shape2 = |name: &str| -> Result<[usize; 2]> {
        let s = w
            .tensors
            .get(name)
            .map(|t| t.shape.as_slice())
            .ok_or_else(|| {
                Error::invalid(
                    origin,
                    format!("not official RNA-FM weights: no tensor {name:?}"),
                )
            })?;
        match s {
            [a, b] => Ok([*a, *b]),
            _ => Err(Error::invalid(origin, format!("{name} is not 2-D: {s:?}"))),
        }
    };
    let [_, hidden] = shape2("gene_embedder.gene_pathway_ebd")?;
    let [clusters, feat_dim] = shape2("cluster_index_emb")?;
    let blocks = |part: &str| {
        (0..)
            .take_while(|i| w.tensors.contains_key(&format!("blocks.{i}.{part}.weight")))
            .count()
    };
    // Each DiT block has both; a difference means a damaged or foreign state_dict.
    let depth = blocks("attn.qkv");
    if blocks("adaLN_modulation.1") != depth {
        return Err(Error::invalid(
            origin,
            format!(
                "{depth} blocks with attention but {} with adaLN modulation",
                blocks("adaLN_modulation.1")
            ),
        ));
    }
    let [fc1, _] = shape2("blocks.0.mlp.fc1.weight")?;
    let mut config = ModelConfig::paper(genes, clusters, feat_dim);
    config.hidden = hidden;
    config.depth = depth;
    config.heads = heads;
    config.mlp_ratio = fc1 / hidden.max(1);
    config.graph_attention = w.tensors.contains_key("pathway_graph.attn.in_proj_weight");
    config.validate(origin)?;
    Ok(config)
}

/// The whole model of official weights `w` read from `weights_path`: config, genes (from
/// `genes`, else counted from the pathway file and named by index) and pathways, checked
/// against the weights.
pub fn spec_from_official(
    w: &WeightMap,
    weights_path: &Path,
    pathways: &Path,
    genes: Option<&Path>,
    heads: usize,
) -> Result<ModelSpec> {
    let (symbols, set) = read_genes_and_pathways(pathways, genes)?;
    let config = infer_config(w, weights_path, symbols.len(), heads)?;
    let tokens = w.tensors["gene_embedder.gene_pathway_ebd"].shape[0];
    if tokens != set.len() {
        return Err(Error::invalid(
            weights_path,
            format!(
                "the checkpoint has {tokens} pathway tokens but {} lists {}",
                pathways.display(),
                set.len()
            ),
        ));
    }
    check_add_mask(w, &set, weights_path)?;
    let spec = ModelSpec {
        config,
        genes: symbols,
        pathways: set,
        normalization: None,
    };
    spec.validate(weights_path)?;
    Ok(spec)
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
