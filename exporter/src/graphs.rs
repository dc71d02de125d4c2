//! The five graphs of the runtime contract and the null condition's slide embedding, and
//! optionally an int8 variant of the backbone, the per-step graph whose cost is token-wise
//! linear layers (`rnafm-export --int8`, `rnafm-run --precision int8`). embed has none: its
//! weights are the per-pathway MLPs, which stay float, so an int8 embed repeated ~370 MB
//! (paper size) to quantise the ~1 MB pathway graph block. Measured at paper size, 10 draws,
//! farm-bench paired: int8 sampling with the float embed takes 1.03x as long as with the int8
//! one (0.96-1.12); moving the block into the backbone instead gained nothing for int8
//! (1.01x) and cost fp32 sampling 1.024x.

use std::path::Path;

use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};
use tract_onnx::prelude::*;

use crate::layers::GraphOptions;
use crate::{backbone_graph, condition_graph, embed_graph, heads_graph, modulation_graph};

pub use rnafm_runtime::bundle_members::{
    BACKBONE, BACKBONE_INT8, CONDITION, EMBED, HEADS, MODULATION, NULL_SLIDE_EMB,
};

pub struct Graphs {
    pub condition: Vec<u8>,
    pub modulation: Vec<u8>,
    pub embed: Vec<u8>,
    pub backbone: Vec<u8>,
    pub heads: Vec<u8>,
    /// condition.onnx applied to `empty_cond`, [1, H].
    pub null_slide_emb: Vec<f32>,
    /// The int8 variant of backbone.onnx ([`Graphs::add_int8`]).
    pub int8: Option<Vec<u8>>,
}

impl Graphs {
    /// (member name, bytes) of the graphs.
    pub fn members(&self) -> [(&'static str, &[u8]); 5] {
        [
            (CONDITION, &self.condition),
            (MODULATION, &self.modulation),
            (EMBED, &self.embed),
            (BACKBONE, &self.backbone),
            (HEADS, &self.heads),
        ]
    }

    /// (member name, bytes) of the int8 variant, if built.
    pub fn int8_members(&self) -> Vec<(&'static str, &[u8])> {
        self.int8
            .iter()
            .map(|b| (BACKBONE_INT8, b.as_slice()))
            .collect()
    }

    /// Builds the int8 variant of backbone.onnx.
    pub fn add_int8(&mut self, spec: &ModelSpec, w: &WeightMap, origin: &Path) -> Result<()> {
        let o = GraphOptions {
            int8: true,
            ..GraphOptions::BUNDLE
        };
        let backbone = backbone_graph::build(&spec.config, spec.pathways.len(), w, origin, o)?;
        self.int8 = Some(backbone);
        Ok(())
    }
}

/// Builds every graph as bundles hold them; `progress` is called after each with the graph's
/// member name.
pub fn build(
    spec: &ModelSpec,
    w: &WeightMap,
    origin: &Path,
    progress: impl FnMut(&str),
) -> Result<Graphs> {
    build_with(spec, w, origin, GraphOptions::BUNDLE, progress)
}

/// The same graphs in standard ONNX operators only (attention unfused), for engines other
/// than ONNX Runtime; slower there than [`build`]'s.
pub fn build_portable(spec: &ModelSpec, w: &WeightMap, origin: &Path) -> Result<Graphs> {
    let o = GraphOptions {
        int8: false,
        fused_attention: false,
    };
    build_with(spec, w, origin, o, |_| {})
}

fn build_with(
    spec: &ModelSpec,
    w: &WeightMap,
    origin: &Path,
    opts: GraphOptions,
    mut progress: impl FnMut(&str),
) -> Result<Graphs> {
    spec.validate(origin)?;
    // The graph contract has a background token (its genes are those in no pathway; the
    // official GO sets always have some). A pathway set that covers every gene trains (the
    // trainer drops the token) but has no graphs yet: say so instead of a missing tensor.
    if spec.pathways.background.is_empty() {
        return Err(Error::invalid(
            origin,
            "every gene is in a pathway, so the model has no background token, which the exported graphs need; train with at least one gene outside the pathways (e.g. UNMAPPED)",
        ));
    }
    let cfg = &spec.config;
    let condition = condition_graph::build(cfg, w, origin)?;
    progress(CONDITION);
    let modulation = modulation_graph::build(cfg, spec.pathways.len(), w, origin)?;
    progress(MODULATION);
    let embed = embed_graph::build(spec, w, origin, opts)?;
    progress(EMBED);
    let backbone = backbone_graph::build(cfg, spec.pathways.len(), w, origin, opts)?;
    progress(BACKBONE);
    let heads = heads_graph::build(spec, w, origin)?;
    progress(HEADS);
    let empty = w.get("empty_cond", &[1, cfg.clusters, cfg.feat_dim], origin)?;
    let null_slide_emb =
        run_condition_tract(&condition, &empty.data, cfg.clusters, cfg.feat_dim)
            .map_err(|e| Error::invalid(origin, format!("null condition embedding: {e}")))?;
    progress(NULL_SLIDE_EMB);
    Ok(Graphs {
        condition,
        modulation,
        embed,
        backbone,
        heads,
        null_slide_emb,
        int8: None,
    })
}

/// Runs condition.onnx on one slide with tract (pure Rust, so export needs no ONNX Runtime).
fn run_condition_tract(
    graph: &[u8],
    features: &[f32],
    k: usize,
    d: usize,
) -> TractResult<Vec<f32>> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(graph))?
        .with_input_fact(0, f32::fact([1, k, d]).into())?
        .into_optimized()?
        .into_runnable()?;
    let input = tract_ndarray::Array3::from_shape_vec((1, k, d), features.to_vec())?;
    let out = model.run(tvec!(input.into_tensor().into()))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

/// Serialises a float32 array as .npy bytes.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_s}, }}");
    // Header padded so the data starts 64-byte aligned, newline-terminated.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
