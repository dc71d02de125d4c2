//! Fresh weights with the official initialisation (`RNAFMModel.initialize`): Xavier-uniform
//! linears with zero bias; N(0, 0.02) for the time and image embedders; zeroed adaLN
//! modulations and pathway output layers; embeddings randn/√dim; LayerNorm 1/0; alpha 0.1.
//! Produced as a weight map so that one constructor (`VelocityNet::from_weights`) serves
//! fresh, imported and resumed models alike.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::{Tensor, WeightMap};

use crate::slide_encoder::SLIDE_LAYERS;
use crate::timestep::FREQ_DIM;

struct Init {
    rng: ChaCha8Rng,
    map: WeightMap,
}

impl Init {
    fn put(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>) {
        self.map.insert(name, Tensor::new(shape, data));
    }

    fn fill(&mut self, name: String, shape: Vec<usize>, v: f32) {
        let n = shape.iter().product();
        self.put(name, shape, vec![v; n]);
    }

    fn normal(&mut self, name: String, shape: Vec<usize>, sd: f32) {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                let z: f32 = StandardNormal.sample(&mut self.rng);
                z * sd
            })
            .collect();
        self.put(name, shape, data);
    }

    /// PyTorch Linear [out, in]: Xavier-uniform weight (or N(0, sd) / zeros) and zero bias.
    fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool, how: Weight) {
        let shape = vec![d_out, d_in];
        let name = format!("{prefix}.weight");
        match how {
            Weight::Xavier => {
                let a = (6.0 / (d_in + d_out) as f32).sqrt();
                let data = (0..d_in * d_out)
                    .map(|_| self.rng.random_range(-a..a))
                    .collect();
                self.put(name, shape, data);
            }
            Weight::Normal(sd) => self.normal(name, shape, sd),
            Weight::Zero => self.fill(name, shape, 0.0),
        }
        if bias {
            self.fill(format!("{prefix}.bias"), vec![d_out], 0.0);
        }
    }

    fn norm(&mut self, prefix: &str, d: usize) {
        self.fill(format!("{prefix}.weight"), vec![d], 1.0);
        self.fill(format!("{prefix}.bias"), vec![d], 0.0);
    }
}

#[derive(Clone, Copy)]
enum Weight {
    Xavier,
    Normal(f32),
    Zero,
}

/// Official-style initial weights for `spec`, deterministic in `seed`.
pub fn init_weights(spec: &ModelSpec, seed: u64) -> WeightMap {
    let c = &spec.config;
    let (h, d, k) = (c.hidden, c.feat_dim, c.clusters);
    let pw = &spec.pathways;
    let mut w = Init {
        rng: ChaCha8Rng::seed_from_u64(seed),
        map: WeightMap::new(),
    };
    let p = pw.len();
    w.normal(
        "gene_embedder.gene_pathway_ebd".into(),
        vec![p, h],
        1.0 / (h as f32).sqrt(),
    );
    for (i, m) in pw.members.iter().enumerate() {
        let pre = format!("gene_embedder.gene_count_ebd.{i}");
        w.linear(&format!("{pre}.0"), m.len(), h, true, Weight::Xavier);
        w.linear(&format!("{pre}.2"), h, h, true, Weight::Xavier);
    }
    if !pw.background.is_empty() {
        let nb = pw.background.len();
        w.linear(
            "gene_embedder.bg_gene_count_ebd.0",
            nb,
            h,
            true,
            Weight::Xavier,
        );
        w.linear(
            "gene_embedder.bg_gene_count_ebd.2",
            h,
            h,
            true,
            Weight::Xavier,
        );
        w.fill("gene_embedder.bg_gene_bias".into(), vec![1, 1, h], 0.0);
        w.linear("bg_head.ada.1", h, 2 * h, true, Weight::Xavier);
        w.linear("bg_head.fc", h, nb, true, Weight::Xavier);
    }
    if c.graph_attention {
        w.norm("pathway_graph.norm1", h);
        w.linear(
            "pathway_graph.attn.in_proj",
            h,
            3 * h,
            false,
            Weight::Xavier,
        );
        // nn.MultiheadAttention names its fused projection without the `.weight` suffix.
        let t = w.map.tensors.remove("pathway_graph.attn.in_proj.weight");
        if let Some(t) = t {
            w.map.insert("pathway_graph.attn.in_proj_weight", t);
        }
        w.fill("pathway_graph.attn.in_proj_bias".into(), vec![3 * h], 0.0);
        w.linear("pathway_graph.attn.out_proj", h, h, true, Weight::Xavier);
        w.fill("pathway_graph.alpha".into(), vec![], 0.1);
        w.norm("pathway_graph.norm2", h);
        w.linear("pathway_graph.mlp.0", h, 4 * h, true, Weight::Xavier);
        w.linear("pathway_graph.mlp.2", 4 * h, h, true, Weight::Xavier);
    }
    w.linear("t_embedder.mlp.0", FREQ_DIM, h, true, Weight::Normal(0.02));
    w.linear("t_embedder.mlp.2", h, h, true, Weight::Normal(0.02));
    w.linear("image_embedder.0", d, d, true, Weight::Normal(0.02));
    w.linear("image_embedder.2", d, h, true, Weight::Normal(0.02));
    w.normal(
        "cluster_index_emb".into(),
        vec![k, d],
        1.0 / (d as f32).sqrt(),
    );
    w.normal("empty_cond".into(), vec![1, k, d], 1.0 / (d as f32).sqrt());
    for i in 0..SLIDE_LAYERS {
        let pre = format!("transformer.layers.{i}");
        w.linear(&format!("{pre}.0.qkv"), d, 3 * d, false, Weight::Xavier);
        w.linear(&format!("{pre}.0.proj"), d, d, true, Weight::Xavier);
        w.norm(&format!("{pre}.1.net.0"), d);
        w.linear(&format!("{pre}.1.net.1"), d, 4 * h, true, Weight::Xavier);
        w.linear(&format!("{pre}.1.net.3"), 4 * h, d, true, Weight::Xavier);
    }
    for i in 0..c.depth {
        let pre = format!("blocks.{i}");
        w.linear(&format!("{pre}.attn.qkv"), h, 3 * h, true, Weight::Xavier);
        w.linear(&format!("{pre}.attn.proj"), h, h, true, Weight::Xavier);
        w.linear(
            &format!("{pre}.mlp.fc1"),
            h,
            c.mlp_ratio * h,
            true,
            Weight::Xavier,
        );
        w.linear(
            &format!("{pre}.mlp.fc2"),
            c.mlp_ratio * h,
            h,
            true,
            Weight::Xavier,
        );
        w.linear(
            &format!("{pre}.adaLN_modulation.1"),
            h,
            6 * h,
            true,
            Weight::Zero,
        );
    }
    for (i, m) in pw.members.iter().enumerate() {
        w.linear(
            &format!("final_layer.linear.{i}"),
            h,
            m.len(),
            true,
            Weight::Zero,
        );
        w.linear(
            &format!("final_layer.adaLN_modulation.{i}.1"),
            h,
            2 * h,
            true,
            Weight::Zero,
        );
    }
    w.map
}

/// Adds the training-only auxiliary head (slide embedding → genes; see
/// `TrainOptions::aux_weight`) to fresh weights: Xavier weight, zero bias.
pub fn add_aux_head(w: &mut WeightMap, hidden: usize, genes: usize, seed: u64) {
    let mut i = Init {
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0xA0C5),
        map: WeightMap::new(),
    };
    i.linear(
        crate::velocity_net::AUX_HEAD,
        hidden,
        genes,
        true,
        Weight::Xavier,
    );
    for (name, t) in i.map.tensors {
        w.insert(name, t);
    }
}
