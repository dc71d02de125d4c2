//! The command-line flags of `rnafm-eval`, and how they become the library's options. The
//! help text of each flag is its doc comment here.

use std::path::PathBuf;

use rnafm_eval::{calibrate, evaluate, report, ridge, synth};
use rnafm_runtime::calibration;

/// Arguments of `evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// Predictions in log2(FPKM-UQ+1): a folder of `<slide>.samples.npy` [n, genes] (as
    /// `rnafm-run` writes), or one `.npy` of means [slides, genes] or samples
    /// [n, slides, genes] in the reference CSV's row order.
    #[arg(long)]
    pub pred: PathBuf,
    /// Reference CSV with the measured FPKM-UQ values.
    #[arg(long)]
    pub truth: PathBuf,
    /// Gene list in the predictions' column order (default: the CSV's gene columns).
    #[arg(long)]
    pub genes: Option<PathBuf>,
    /// Per-gene cross-validated r to rank the top-k sets by: a `.npy` (one value per gene)
    /// or rnafm-train's metrics.json (its pooled out-of-fold r).
    #[arg(long)]
    pub rank_by: Option<PathBuf>,
    /// With a --rank-by metrics.json: rank by the r of the other folds' out-of-fold
    /// predictions instead of the pooled r, for evaluating fold K's held-out slides. The
    /// pooled r includes the evaluated slides, which makes top-k means optimistic, most of
    /// all for a deterministic model whose evaluated predictions are the ranked ones.
    #[arg(long, requires = "rank_by")]
    pub rank_excluding_fold: Option<usize>,
    /// Oracle of a synthetic cohort (`oracle.npz`).
    #[arg(long)]
    pub oracle: Option<PathBuf>,
    /// Where to write the JSON report (printed to stdout when absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With a --pred folder: score only the CSV's slides that have a samples file there
    /// (e.g. the held-out fold of a cross-validation), instead of requiring all.
    #[arg(long)]
    pub present_only: bool,
    /// Score only these slides (one name a line, e.g. a fold's heldout.txt); a `.npy` of
    /// every CSV row is then cut to them.
    #[arg(long, value_name = "LIST")]
    pub slides: Option<PathBuf>,
    /// Another model's predictions on the same slides (e.g. the regression baseline's
    /// oof_predictions.npy): adds the difference in mean r (this model − that one) with a
    /// 95% paired bootstrap interval over slides, per gene set.
    #[arg(long, value_name = "PRED")]
    pub versus: Option<PathBuf>,
    /// Ranking of the --versus model's top-k genes (as --rank-by; --rank-excluding-fold
    /// applies to it too).
    #[arg(long, requires = "versus")]
    pub versus_rank_by: Option<PathBuf>,
    /// Bootstrap replicates for --versus.
    #[arg(long, default_value_t = 1000)]
    pub replicates: usize,
    /// The model the draws come from (.rnafm bundle, unpacked bundle or checkpoint
    /// folder): interval coverage is also reported per group of genes by how many pathway
    /// tokens hold them, the groups of `rnafm-eval calibrate`.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
}

impl From<EvaluateArgs> for evaluate::EvaluateOptions {
    fn from(a: EvaluateArgs) -> Self {
        evaluate::EvaluateOptions {
            pred: a.pred,
            truth: a.truth,
            genes: a.genes,
            rank_by: a.rank_by,
            rank_excluding_fold: a.rank_excluding_fold,
            oracle: a.oracle,
            out: a.out,
            present_only: a.present_only,
            slides: a.slides,
            versus: a.versus,
            versus_rank_by: a.versus_rank_by,
            replicates: a.replicates,
            model: a.model,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// rnafm-run output folder with `<slide>.samples.npy` draws (--save-samples,
    /// --no-calibration) of the model to calibrate, and its run.json. Repeat it to pool
    /// folders of that model (same guidance, time points and draws), e.g. its draws on the
    /// fold's validation patients and on its held-out patients.
    #[arg(long, required = true)]
    pub pred: Vec<PathBuf>,
    /// Reference CSV with the measured values of those slides.
    #[arg(long)]
    pub truth: PathBuf,
    /// Gene list in the draws' column order (default: the CSV's gene columns).
    #[arg(long)]
    pub genes: Option<PathBuf>,
    /// Fit on these slides only (one name a line, e.g. fold_0/validation.txt, or it and
    /// fold_0/heldout.txt together when the model is judged on external slides); one per
    /// --pred, in the same order. Default: every CSV slide with draws in each --pred.
    #[arg(long, value_name = "LIST")]
    pub slides: Vec<PathBuf>,
    /// Calibration file to write (e.g. <run>/fold_0/calibration.json). Entries of an
    /// existing file for other guidance scales or step counts are kept.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Central interval levels to fit, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = calibration::DEFAULT_LEVELS)]
    pub levels: Vec<f64>,
    /// What the slides are, recorded with the factors.
    #[arg(long, default_value = "validation patients")]
    pub fitted_on: String,
    /// The `rnafm-train refit-anchor` folder of the model these draws come from: each
    /// slide whose anchor was refitted on it is scored against its leave-one-out anchor
    /// prediction (the draws of a model that never saw it) instead of its in-sample one.
    #[arg(long, value_name = "DIR")]
    pub anchor_loo: Option<PathBuf>,
    /// The model the draws come from (.rnafm bundle, unpacked bundle or checkpoint
    /// folder), read for its pathways: genes are calibrated in groups by how many pathway
    /// tokens hold them (background, 1, 2–3, 4–10, 11+; groups under 50 genes join a
    /// neighbour). Default: the model named in the first --pred's run.json.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// One set of factors for all genes (no gene groups, no model read).
    #[arg(long, conflicts_with = "model")]
    pub no_gene_groups: bool,
}

impl From<CalibrateArgs> for calibrate::CalibrateOptions {
    fn from(a: CalibrateArgs) -> Self {
        calibrate::CalibrateOptions {
            pred: a.pred,
            truth: a.truth,
            genes: a.genes,
            slides: a.slides,
            out: a.out,
            levels: a.levels,
            fitted_on: a.fitted_on,
            anchor_loo: a.anchor_loo,
            groups: if a.no_gene_groups {
                calibrate::GeneGroups::None
            } else {
                a.model.map_or(
                    calibrate::GeneGroups::RunModel,
                    calibrate::GeneGroups::Model,
                )
            },
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A table row: LABEL=EVALUATION.json (from `rnafm-train evaluate --out`; split at the
    /// last `=`), in table
    /// order. The first is the model the checks are about; the oracle row comes from the
    /// first evaluation that has one.
    #[arg(long = "entry", value_name = "LABEL=JSON", required = true)]
    pub entries: Vec<String>,
    /// Label of the regression baseline among the entries (default: the first label
    /// containing "baseline").
    #[arg(long)]
    pub baseline: Option<String>,
    /// The model's rnafm-run output folder (with --save-samples) for the plot of predicted
    /// against true values; needs --truth.
    #[arg(long, requires = "truth")]
    pub scatter: Option<PathBuf>,
    /// Reference CSV (truth) for --scatter.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Gene list of the predictions (default: the CSV's gene columns).
    #[arg(long)]
    pub genes: Option<PathBuf>,
    /// Slides of --scatter to plot (one a line; default: all with draws there).
    #[arg(long)]
    pub slides: Option<PathBuf>,
    /// Ranking that picks the top genes of the scatter plot (metrics.json or .npy).
    #[arg(long)]
    pub rank_by: Option<PathBuf>,
    /// A line describing the run, written under the title of summary.md.
    #[arg(long)]
    pub title: Option<String>,
    /// Output folder: summary.md and the PNG plots.
    #[arg(short, long, default_value = "report")]
    pub out: PathBuf,
}

impl From<ReportArgs> for report::ReportOptions {
    fn from(a: ReportArgs) -> Self {
        report::ReportOptions {
            entries: a.entries,
            baseline: a.baseline,
            scatter: a.scatter,
            truth: a.truth,
            genes: a.genes,
            slides: a.slides,
            rank_by: a.rank_by,
            title: a.title,
            out: a.out,
        }
    }
}

/// Arguments of `ridge`.
#[derive(Debug, Clone, clap::Args)]
pub struct RidgeArgs {
    /// Reference CSV of the training slides (every row is used).
    #[arg(long)]
    pub train: PathBuf,
    /// Folder of per-slide K×D cluster features (<slide>.npy or .npz).
    #[arg(long)]
    pub features: PathBuf,
    /// Gene list: the genes to predict, in order.
    #[arg(long)]
    pub genes: PathBuf,
    /// Slides to predict, one name a line (e.g. a fold's heldout.txt).
    #[arg(long)]
    pub slides: PathBuf,
    /// Output .npy [slides, genes] of log2(FPKM-UQ+1), rows in the order of --slides.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Regress on each feature's mean over the clusters only (as the anchor of `rnafm-train
    /// train --anchor` does), instead of its mean, sd and max.
    #[arg(long)]
    pub means_only: bool,
}

impl From<RidgeArgs> for ridge::RidgeOptions {
    fn from(a: RidgeArgs) -> Self {
        ridge::RidgeOptions {
            train: a.train,
            features: a.features,
            genes: a.genes,
            slides: a.slides,
            out: a.out,
            means_only: a.means_only,
        }
    }
}

/// Options of the synthetic cohort generator (defaults: `SynthOptions::new`).
#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output folder (created; existing files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = defaults().patients)]
    pub patients: usize,
    #[arg(long, default_value_t = defaults().slides_per_patient)]
    pub slides_per_patient: usize,
    /// Number of synthetic genes (ignored with --reference-dir).
    #[arg(long, default_value_t = defaults().genes)]
    pub genes: usize,
    /// Number of synthetic pathways (ignored with --reference-dir).
    #[arg(long, default_value_t = defaults().pathways)]
    pub pathways: usize,
    #[arg(long, default_value_t = defaults().clusters)]
    pub clusters: usize,
    #[arg(long, default_value_t = defaults().feat_dim)]
    pub feat_dim: usize,
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Dimensions of the latent state visible in morphology.
    #[arg(long, default_value_t = defaults().visible_dims)]
    pub visible_dims: usize,
    /// Dimensions of the hidden latent state.
    #[arg(long, default_value_t = defaults().hidden_dims)]
    pub hidden_dims: usize,
    /// Mean share of a programme's variance that is visible (0…1).
    #[arg(long, default_value_t = defaults().visibility)]
    pub visibility: f64,
    /// Fraction of pathways whose programme depends on the hidden subtype.
    #[arg(long, default_value_t = defaults().subtype_fraction)]
    pub subtype_fraction: f64,
    /// Share of an affected programme's variance due to the subtype (0…1).
    #[arg(long, default_value_t = defaults().subtype_strength)]
    pub subtype_strength: f64,
    /// Share of a gene's variance that is gene-level noise (0…1).
    #[arg(long, default_value_t = defaults().gene_noise)]
    pub gene_noise: f64,
    /// SD of the noise added to cluster features.
    #[arg(long, default_value_t = defaults().feature_noise)]
    pub feature_noise: f64,
    /// Draws of the hidden part per patient for the oracle.
    #[arg(long, default_value_t = defaults().oracle_draws)]
    pub oracle_draws: usize,
    /// Use the real genes, GO-MF pathways and gene statistics of a folder laid out as the
    /// release's reference-cohorts data (gene_list.csv, all_gene_indices_molecular_function.json,
    /// <COHORT>_rna_data_{mean,std}.npy).
    #[arg(long)]
    pub reference_dir: Option<PathBuf>,
    /// Cohort whose gene statistics are used with --reference-dir.
    #[arg(long, default_value_t = defaults().cohort)]
    pub cohort: String,
    /// With --reference-dir: a random subset of this many real genes (90% from GO-MF
    /// pathways, 10% background), the pathways cut to them (about 350 overlapping tokens
    /// for 1,100 genes).
    #[arg(long)]
    pub real_genes: Option<usize>,
    /// Saturation γ of the pathway programmes, tanh(γ·latent) (0: linear).
    #[arg(long, default_value_t = defaults().nonlinearity)]
    pub nonlinearity: f64,
    /// Number of sites; each patient's slides carry its site's offset in every feature
    /// (a batch effect), and the CSV's project column names the site.
    #[arg(long, default_value_t = defaults().sites)]
    pub sites: usize,
    /// SD of each site's feature offset.
    #[arg(long, default_value_t = defaults().site_shift)]
    pub site_shift: f64,
    /// Heteroscedastic noise: gene noise variance × (1 ± r) by hidden subtype (0…0.9).
    #[arg(long, default_value_t = defaults().noise_by_subtype)]
    pub noise_by_subtype: f64,
    /// Keep the last N patients out of training.csv and list their slides in external.txt
    /// (reference.csv keeps every slide as the truth).
    #[arg(long, default_value_t = defaults().external_patients)]
    pub external_patients: usize,
}

impl From<SynthArgs> for synth::SynthOptions {
    fn from(a: SynthArgs) -> Self {
        synth::SynthOptions {
            out: a.out,
            patients: a.patients,
            slides_per_patient: a.slides_per_patient,
            genes: a.genes,
            pathways: a.pathways,
            clusters: a.clusters,
            feat_dim: a.feat_dim,
            seed: a.seed,
            visible_dims: a.visible_dims,
            hidden_dims: a.hidden_dims,
            visibility: a.visibility,
            subtype_fraction: a.subtype_fraction,
            subtype_strength: a.subtype_strength,
            gene_noise: a.gene_noise,
            feature_noise: a.feature_noise,
            oracle_draws: a.oracle_draws,
            reference_dir: a.reference_dir,
            cohort: a.cohort,
            real_genes: a.real_genes,
            nonlinearity: a.nonlinearity,
            sites: a.sites,
            site_shift: a.site_shift,
            noise_by_subtype: a.noise_by_subtype,
            external_patients: a.external_patients,
        }
    }
}

/// The library's synth defaults, which the flags show and use.
fn defaults() -> synth::SynthOptions {
    synth::SynthOptions::new("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        synth: SynthArgs,
    }

    #[test]
    fn synth_flags_parse_and_default_to_the_library() {
        let cli = Cli::try_parse_from([
            "x",
            "--out",
            "o",
            "--patients",
            "5",
            "--slides-per-patient",
            "2",
            "--reference-dir",
            "r",
            "--oracle-draws",
            "9",
        ])
        .unwrap();
        let o = synth::SynthOptions::from(cli.synth);
        assert_eq!(
            (o.patients, o.slides_per_patient, o.oracle_draws),
            (5, 2, 9)
        );
        assert_eq!(o.reference_dir.as_deref(), Some(Path::new("r")));
        let d = synth::SynthOptions::from(Cli::try_parse_from(["x", "--out", "o"]).unwrap().synth);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::to_value(synth::SynthOptions::new("o")).unwrap()
        );
    }
}

/// Arguments of `pool`.
#[derive(Debug, Clone, clap::Args)]
pub struct PoolArgs {
    /// `rnafm-eval evaluate --versus` reports, one per cohort, each comparing the same two
    /// models (e.g. every cohort's eval_rnafm_vs_ridge.json); at least two.
    #[arg(required = true, num_args = 2.., value_name = "EVAL_JSON")]
    pub evaluations: Vec<PathBuf>,
    /// Where to write the JSON report (the table is printed either way).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}
