//! A ModelSpec for official PyTorch weights given directly (no trainer checkpoint): sizes
//! are inferred from the tensor shapes, genes and pathways come from their files.

use std::path::Path;

use rnafm_runtime::genes::GeneList;
use rnafm_runtime::model_config::ModelConfig;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::pathways::PathwaySet;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

fn shape<'a>(w: &'a WeightMap, name: &str, origin: &Path) -> Result<&'a [usize]> {
    w.tensors
        .get(name)
        .map(|t| t.shape.as_slice())
        .ok_or_else(|| Error::invalid(origin, format!("not official RNA-FM weights: no {name}")))
}

pub fn spec_from_official(
    w: &WeightMap,
    weights_path: &Path,
    pathways: &Path,
    genes: &Path,
    heads: usize,
) -> Result<ModelSpec> {
    let gl = GeneList::read(genes)?;
    let ps = PathwaySet::read(pathways, Some(&gl), gl.len())?;
    let emb = shape(w, "cluster_index_emb", weights_path)?;
    let (clusters, feat_dim) = match emb {
        [k, d] => (*k, *d),
        _ => {
            return Err(Error::invalid(
                weights_path,
                "cluster_index_emb must be [K, D]",
            ));
        }
    };
    let hidden = *shape(w, "gene_embedder.gene_pathway_ebd", weights_path)?
        .last()
        .unwrap_or(&0);
    let depth = (0..)
        .take_while(|i| {
            w.tensors
                .contains_key(&format!("blocks.{i}.attn.qkv.weight"))
        })
        .count();
    let fc1 = shape(w, "blocks.0.mlp.fc1.weight", weights_path)?[0];
    let mut config = ModelConfig::paper(gl.len(), clusters, feat_dim);
    config.hidden = hidden;
    config.depth = depth;
    config.heads = heads;
    config.mlp_ratio = fc1.checked_div(hidden).unwrap_or(0);
    config.graph_attention = w.tensors.contains_key("pathway_graph.alpha");
    let spec = ModelSpec {
        config,
        genes: gl.symbols().to_vec(),
        pathways: ps,
        normalization: None,
    };
    spec.validate(weights_path)?;
    Ok(spec)
}
