//! `condition.onnx`: cluster features [B,K,D] → slide embedding [B,H].

use std::path::Path;

use rnafm_runtime::Result;
use rnafm_runtime::model_config::ModelConfig;
use rnafm_runtime::weights::WeightMap;

use crate::layers::Ctx;
use crate::onnx_builder::{Dim, attr_i, attr_ints};

pub fn build(cfg: &ModelConfig, w: &WeightMap, origin: &Path) -> Result<Vec<u8>> {
    let (k, d, h) = (cfg.clusters, cfg.feat_dim, cfg.hidden);
    let mut c = Ctx::new(w, origin);
    let x =
        c.g.input("features", &[Dim::Batch, Dim::Fixed(k), Dim::Fixed(d)]);
    let pos = c.weight("cluster_index_emb", &[k, d])?;
    let mut y = c.g.op("Add", &[&x, &pos], vec![]);
    let mut l = 0;
    while c
        .w
        .tensors
        .contains_key(&format!("transformer.layers.{l}.0.qkv.weight"))
    {
        let p = format!("transformer.layers.{l}");
        let a = c.attention(
            &y,
            k,
            d,
            cfg.heads,
            &format!("{p}.0.qkv.weight"),
            None,
            (&format!("{p}.0.proj.weight"), &format!("{p}.0.proj.bias")),
            None,
        )?;
        y = c.g.op("Add", &[&a, &y], vec![]);
        let ln = c.layer_norm(&y, Some(&format!("{p}.1.net.0")), d, 1e-5)?;
        let inner = c.shape(&format!("{p}.1.net.1.weight"))?[0];
        let f = c.linear(&ln, &format!("{p}.1.net.1"), d, inner, true)?;
        let f = c.gelu(&f);
        let f = c.linear(&f, &format!("{p}.1.net.3"), inner, d, true)?;
        y = c.g.op("Add", &[&f, &y], vec![]);
        l += 1;
    }
    let m = c.g.op(
        "ReduceMean",
        &[&y],
        vec![attr_ints("axes", &[1]), attr_i("keepdims", 0)],
    );
    let e = c.linear(&m, "image_embedder.0", d, d, true)?;
    let e = c.silu(&e);
    let e = c.linear(&e, "image_embedder.2", d, h, true)?;
    c.g.output(&e, "slide_emb", &[Dim::Batch, Dim::Fixed(h)]);
    Ok(c.g.encode("condition"))
}
