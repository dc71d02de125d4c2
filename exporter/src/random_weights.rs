//! Random official-named weights for a spec (benchmarks and size checks at the paper
//! config, where no trained checkpoint is at hand).

use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::sampler::noise;
use rnafm_runtime::weights::{Tensor, WeightMap};

pub fn random_official(spec: &ModelSpec, seed: u64) -> WeightMap {
    let c = &spec.config;
    let (h, d, k) = (c.hidden, c.feat_dim, c.clusters);
    let ps = &spec.pathways;
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("cluster_index_emb".into(), vec![k, d]),
        ("empty_cond".into(), vec![1, k, d]),
        ("gene_embedder.gene_pathway_ebd".into(), vec![ps.len(), h]),
        ("gene_embedder.bg_gene_bias".into(), vec![1, 1, h]),
    ];
    let lin = |s: &mut Vec<(String, Vec<usize>)>, p: &str, i: usize, o: usize, bias: bool| {
        s.push((format!("{p}.weight"), vec![o, i]));
        if bias {
            s.push((format!("{p}.bias"), vec![o]));
        }
    };
    for (i, m) in ps.members.iter().enumerate() {
        lin(
            &mut shapes,
            &format!("gene_embedder.gene_count_ebd.{i}.0"),
            m.len(),
            h,
            true,
        );
        lin(
            &mut shapes,
            &format!("gene_embedder.gene_count_ebd.{i}.2"),
            h,
            h,
            true,
        );
        lin(
            &mut shapes,
            &format!("final_layer.linear.{i}"),
            h,
            m.len(),
            true,
        );
        lin(
            &mut shapes,
            &format!("final_layer.adaLN_modulation.{i}.1"),
            h,
            2 * h,
            true,
        );
    }
    let nbg = ps.background.len();
    lin(
        &mut shapes,
        "gene_embedder.bg_gene_count_ebd.0",
        nbg,
        h,
        true,
    );
    lin(&mut shapes, "gene_embedder.bg_gene_count_ebd.2", h, h, true);
    if c.graph_attention {
        shapes.push(("pathway_graph.alpha".into(), vec![]));
        for n in ["norm1", "norm2"] {
            shapes.push((format!("pathway_graph.{n}.weight"), vec![h]));
            shapes.push((format!("pathway_graph.{n}.bias"), vec![h]));
        }
        shapes.push(("pathway_graph.attn.in_proj_weight".into(), vec![3 * h, h]));
        shapes.push(("pathway_graph.attn.in_proj_bias".into(), vec![3 * h]));
        lin(&mut shapes, "pathway_graph.attn.out_proj", h, h, true);
        lin(&mut shapes, "pathway_graph.mlp.0", h, 4 * h, true);
        lin(&mut shapes, "pathway_graph.mlp.2", 4 * h, h, true);
    }
    lin(&mut shapes, "bg_head.ada.1", h, 2 * h, true);
    lin(&mut shapes, "bg_head.fc", h, nbg, true);
    lin(&mut shapes, "t_embedder.mlp.0", 256, h, true);
    lin(&mut shapes, "t_embedder.mlp.2", h, h, true);
    lin(&mut shapes, "image_embedder.0", d, d, true);
    lin(&mut shapes, "image_embedder.2", d, h, true);
    for l in 0..2 {
        let p = format!("transformer.layers.{l}");
        lin(&mut shapes, &format!("{p}.0.qkv"), d, 3 * d, false);
        lin(&mut shapes, &format!("{p}.0.proj"), d, d, true);
        shapes.push((format!("{p}.1.net.0.weight"), vec![d]));
        shapes.push((format!("{p}.1.net.0.bias"), vec![d]));
        lin(&mut shapes, &format!("{p}.1.net.1"), d, 4 * h, true);
        lin(&mut shapes, &format!("{p}.1.net.3"), 4 * h, d, true);
    }
    for b in 0..c.depth {
        let p = format!("blocks.{b}");
        lin(&mut shapes, &format!("{p}.attn.qkv"), h, 3 * h, true);
        lin(&mut shapes, &format!("{p}.attn.proj"), h, h, true);
        lin(
            &mut shapes,
            &format!("{p}.mlp.fc1"),
            h,
            c.mlp_ratio * h,
            true,
        );
        lin(
            &mut shapes,
            &format!("{p}.mlp.fc2"),
            c.mlp_ratio * h,
            h,
            true,
        );
        lin(
            &mut shapes,
            &format!("{p}.adaLN_modulation.1"),
            h,
            6 * h,
            true,
        );
    }
    let mut w = WeightMap::new();
    for (i, (name, shape)) in shapes.into_iter().enumerate() {
        let n: usize = shape.iter().product();
        // Fan-in scaled normal so activations stay O(1) through the depth.
        let fan_in = if shape.len() == 2 && name.ends_with("weight") {
            shape[1]
        } else {
            1
        };
        let std = if name.contains("norm") && name.ends_with("weight") {
            0.0
        } else {
            1.0 / (fan_in as f32).sqrt() * 0.5
        };
        let z = noise(seed, i, 1, n.max(1));
        let mut data: Vec<f32> = z.iter().take(n).map(|v| v * std).collect();
        if name.contains("norm") && name.ends_with("weight") {
            data.iter_mut().for_each(|v| *v = 1.0);
        }
        w.insert(name, Tensor::new(shape, data));
    }
    w
}
