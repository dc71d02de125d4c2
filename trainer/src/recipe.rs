//! Training recipes: the size and schedule `rnafm-train train` uses for every flag the user
//! leaves out. Flags given on the command line (and `--preset` for the architecture) take
//! precedence over the recipe.

use crate::train::ValLoss;

/// A named recipe (`rnafm-train train --recipe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecipeName {
    /// Measured on known-truth cohorts of 128 training patients, ~1,000 real genes and ~350
    /// overlapping GO-MF tokens (`scripts/bench-accuracy`; README, "Accuracy at a realistic
    /// scale"): a small network, a high learning rate with a warmed-up EMA, one-step
    /// validation means, the auxiliary slide loss and the mean anchor.
    Default,
    /// The official code's size and schedule: hidden 256, 7 DiT blocks, 8 heads, lr 1e-4,
    /// the official EMA ramp, guidance 2, no anchor (for importing or re-training the
    /// paper's model; slow on a CPU).
    Paper,
}

/// Which network is trained (`rnafm-train train --model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// RNA-FM (flow matching).
    Rnafm,
    /// The regression baseline (same slide encoder, MLP to all genes, MSE).
    Regression,
}

/// Every value a recipe fills in.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub hidden: usize,
    pub depth: usize,
    pub heads: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub val_fraction: f64,
    pub val_every: usize,
    pub patience: usize,
    /// EMA decay reached after the warm-up; `None`: the official ramp.
    pub ema_decay: Option<f64>,
    /// Time points of validation and out-of-fold means; `None`: the sampling grid's.
    pub predict_time_points: Option<usize>,
    pub aux_weight: f64,
    pub anchor: bool,
}

impl Recipe {
    /// The recipe `name` for `model`.
    pub fn of(name: RecipeName, model: ModelKind) -> Self {
        let paper = Recipe {
            hidden: 256,
            depth: 7,
            heads: 8,
            epochs: 200,
            batch: 32,
            lr: 1e-4,
            val_fraction: 0.1,
            val_every: 5,
            patience: 5,
            ema_decay: None,
            predict_time_points: None,
            aux_weight: 0.0,
            anchor: false,
        };
        match (name, model) {
            (RecipeName::Paper, _) => paper,
            // The regression baseline that `scripts/bench-accuracy` scores: the paper's size
            // with the learning rate and validation interval `scripts/demo-tuning` chose for
            // it (it overfits within ~50 epochs, so it is checked every 5).
            (RecipeName::Default, ModelKind::Regression) => Recipe { lr: 3e-3, ..paper },
            // Each value's measurement is in the README ("Accuracy at a realistic scale",
            // "How the demo's schedules were chosen").
            (RecipeName::Default, ModelKind::Rnafm) => Recipe {
                hidden: 64,
                depth: 2,
                heads: 4,
                epochs: 400,
                batch: 16,
                lr: 6e-3,
                val_fraction: 0.25,
                val_every: 25,
                patience: 4,
                ema_decay: Some(0.99),
                predict_time_points: Some(2),
                aux_weight: 1.0,
                anchor: true,
            },
        }
    }

    /// Guidance scale of validation and prediction when none is given: 1 for an anchored
    /// model (as its bundle samples: guidance only amplifies the conditional part's noise
    /// around the anchor), 2 (the paper's) otherwise.
    pub fn default_cfg(anchor: bool) -> f64 {
        if anchor { 1.0 } else { 2.0 }
    }

    /// Validation loss when none is given: for an anchored model the flow-matching objective
    /// (its mean is the anchor's; what the flow adds is the spread, which that objective
    /// scores and the r of the mean hardly sees: README, "The default recipe"), else r.
    pub fn default_val_loss(anchor: bool) -> ValLoss {
        if anchor { ValLoss::Flow } else { ValLoss::R }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnafm_runtime::model_config::ModelConfig;

    #[test]
    fn paper_recipe_has_the_paper_network_and_no_anchor() {
        let cfg = ModelConfig::paper(20820, 100, 1024);
        for model in [ModelKind::Rnafm, ModelKind::Regression] {
            let r = Recipe::of(RecipeName::Paper, model);
            assert_eq!(
                (r.hidden, r.depth, r.heads),
                (cfg.hidden, cfg.depth, cfg.heads)
            );
            assert!(!r.anchor && r.aux_weight == 0.0 && r.ema_decay.is_none());
        }
        assert_eq!(Recipe::default_cfg(false), 2.0);
    }

    #[test]
    fn the_regression_baseline_never_gets_an_anchor_and_heads_divide_hidden() {
        for name in [RecipeName::Default, RecipeName::Paper] {
            assert!(!Recipe::of(name, ModelKind::Regression).anchor);
            for model in [ModelKind::Rnafm, ModelKind::Regression] {
                let r = Recipe::of(name, model);
                assert_eq!(r.hidden % r.heads, 0);
                assert!(r.val_fraction > 0.0 && r.val_fraction < 1.0);
            }
        }
        assert!(Recipe::of(RecipeName::Default, ModelKind::Rnafm).anchor);
    }
}
