//! The network's hyper-parameters, shared by the trainer (which builds it), the exporter
//! (which writes it as ONNX) and the bundle manifest. Defaults are the official training
//! script's.

/// How gene tokens are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    /// One token per pathway of the pathway file (the method).
    #[default]
    Pathways,
    /// Patches of adjacent genes in alphabetical order (the paper's ablation).
    Alphabetical,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Token width H.
    pub hidden: usize,
    /// Number of DiT blocks.
    pub depth: usize,
    /// Heads of the DiT blocks and of the slide transformer.
    pub heads: usize,
    /// Heads of the pathway graph attention (the official code fixes 4).
    pub graph_heads: usize,
    /// Cluster tokens per slide (K).
    pub clusters: usize,
    /// Tile feature width (D): 1024 for UNI, 2048 for ResNet-50.
    pub feat_dim: usize,
    /// Genes in the output (G).
    pub genes: usize,
    /// DiT MLP width ratio.
    pub mlp_ratio: usize,
    /// Probability of replacing the slide with the null condition during training.
    pub cond_drop: f64,
    /// Whether the pathway graph block is used (`--no-graph-attention` ablation).
    pub graph_attention: bool,
    pub tokens: TokenMode,
}

impl ModelConfig {
    /// The official training script's defaults for a given data shape.
    pub fn paper(genes: usize, clusters: usize, feat_dim: usize) -> Self {
        ModelConfig {
            hidden: 256,
            depth: 7,
            heads: 8,
            graph_heads: 4,
            clusters,
            feat_dim,
            genes,
            mlp_ratio: 4,
            cond_drop: 0.1,
            graph_attention: true,
            tokens: TokenMode::Pathways,
        }
    }

    /// Checks that the shapes fit together; `origin` names the config's source in errors.
    pub fn validate(&self, origin: &std::path::Path) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::invalid(origin, m));
        if self.hidden == 0 || self.depth == 0 || self.heads == 0 || self.graph_heads == 0 {
            return bad("hidden, depth, heads and graph_heads must be positive".into());
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return bad(format!(
                "hidden {} is not divisible by heads {}",
                self.hidden, self.heads
            ));
        }
        if !self.hidden.is_multiple_of(self.graph_heads) {
            return bad(format!(
                "hidden {} is not divisible by graph_heads {}",
                self.hidden, self.graph_heads
            ));
        }
        if !self.feat_dim.is_multiple_of(self.heads) {
            return bad(format!(
                "feature dim {} is not divisible by heads {} (the slide transformer splits it)",
                self.feat_dim, self.heads
            ));
        }
        if self.clusters == 0 || self.feat_dim == 0 || self.genes == 0 {
            return bad("clusters, feat_dim and genes must be positive".into());
        }
        if !(0.0..1.0).contains(&self.cond_drop) {
            return bad(format!("cond_drop {} is not in [0, 1)", self.cond_drop));
        }
        Ok(())
    }
}
