//! `rnafm-eval`: score, calibrate and report RNA-FM predictions without the trainer.

use anyhow::Result;
use clap::{Parser, Subcommand};
use rnafm_eval::{calibrate, evaluate, pool, report, ridge, synth};

mod args;

#[derive(Parser)]
#[command(
    name = "rnafm-eval",
    version,
    about = "Score, calibrate and report RNA-FM predictions (no training framework needed)",
    long_about = "Score, calibrate and report RNA-FM predictions. Reads what rnafm-run writes \
                  (a folder of <slide>.samples.npy) or what rnafm-train writes \
                  (oof_predictions.npy, metrics.json) and a reference CSV of measured \
                  FPKM-UQ. Also writes known-truth synthetic cohorts for checking a \
                  model against the best possible prediction (the oracle)."
)]
struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score predictions against measured expression: per-gene r and RMSE (all genes and
    /// top-k), interval coverage, Gaussian NLL, CRPS, Spearman(var, |error|), oracle.
    #[command(allow_negative_numbers = true)]
    Evaluate(args::EvaluateArgs),
    /// Fit interval calibration factors on rnafm-run draws of validation slides (not the
    /// evaluation slides); rnafm-export stores them in the bundle.
    #[command(allow_negative_numbers = true)]
    Calibrate(args::CalibrateArgs),
    /// Put several evaluations (model, baseline, ablations) and the oracle in one table
    /// with checks; writes summary.md and PNG plots.
    #[command(allow_negative_numbers = true)]
    Report(args::ReportArgs),
    /// Write a known-truth synthetic cohort in the real formats (reference CSV, one
    /// features .npy per slide, pathway JSON, gene list) plus its oracle.
    #[command(allow_negative_numbers = true)]
    Synth(args::SynthArgs),
    /// The ridge baseline: per-gene ridge regression on order-invariant summaries of the
    /// cluster features (mean, sd, max), each gene's penalty chosen by leave-one-out error
    /// on the training slides; writes predictions for other slides.
    Ridge(args::RidgeArgs),
    /// The mean over cohorts of `evaluate --versus` differences (one report per cohort),
    /// with a 95% interval that resamples each cohort's slides on their own.
    Pool(args::PoolArgs),
}

fn main() {
    rnafm_runtime::sigpipe::default_on_broken_pipe();
    let cli = Cli::parse();
    rnafm_runtime::logging::init(cli.verbose);
    if let Err(e) = run(cli.cmd) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Evaluate(a) => {
            let a = evaluate::EvaluateOptions::from(a);
            let r = evaluate::run_evaluate(&a)?;
            if a.out.is_some() {
                print!("{}", evaluate::render_table(&r));
            }
        }
        Command::Calibrate(a) => {
            let a = calibrate::CalibrateOptions::from(a);
            let c = calibrate::run_calibrate(&a)?;
            println!("{}", calibrate::describe(&c, &a.out));
        }
        Command::Report(a) => {
            let a = report::ReportOptions::from(a);
            print!("{}", report::run_report(&a)?);
            println!("report: {}", a.out.join("summary.md").display());
        }
        Command::Synth(a) => println!("{}", synth::run_synth(&a.into())?),
        Command::Ridge(a) => {
            let a = ridge::RidgeOptions::from(a);
            let s = ridge::run_ridge(&a)?;
            println!(
                "ridge: fitted on {} slides ({} summary features, median λ {:.3} × mean eigenvalue); {} slides × {} genes → {}",
                s.training_slides,
                s.summary_features,
                s.median_relative_lambda,
                s.predicted_slides,
                s.genes,
                a.out.display()
            );
        }
        Command::Pool(a) => {
            let r = pool::run_pool(&a.evaluations, a.out.as_deref())?;
            print!("{}", pool::render_table(&r));
        }
    }
    Ok(())
}
