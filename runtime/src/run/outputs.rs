//! Output files of `rnafm-run`, each written atomically: `<slide>.genes.tsv`,
//! `<slide>.pathways.tsv`, optional `<slide>.samples.npy`, and the run's `run.json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::ArrayView2;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::pathways::PathwaySet;
use crate::run::summary::{Stats, column_stats, pathway_scores};

/// The output paths of one slide, named after its input file's stem.
#[derive(Debug, Clone)]
pub struct SlideOutputs {
    pub genes: PathBuf,
    pub pathways: PathBuf,
    pub samples: PathBuf,
    /// `--maps`' per-cluster table (the last map file written but the PNGs).
    pub map_clusters: PathBuf,
}

impl SlideOutputs {
    pub fn new(out_dir: &Path, slide: &str) -> Self {
        SlideOutputs {
            genes: out_dir.join(format!("{slide}.genes.tsv")),
            pathways: out_dir.join(format!("{slide}.pathways.tsv")),
            samples: out_dir.join(format!("{slide}.samples.npy")),
            map_clusters: out_dir.join(format!("{slide}.map.clusters.tsv")),
        }
    }

    /// Whether the outputs a run would write are all there already.
    pub fn complete(&self, with_samples: bool, with_maps: bool) -> bool {
        self.genes.is_file()
            && self.pathways.is_file()
            && (!with_samples || self.samples.is_file())
            && (!with_maps || self.map_clusters.is_file())
    }
}

/// Writes the per-gene table. `values` [n, G] are samples in the reported unit; `cv_r` is
/// the bundle's per-gene cross-validated correlation, when it has one.
pub fn write_genes_tsv(
    path: &Path,
    genes: &[String],
    values: ArrayView2<'_, f32>,
    cv_r: Option<&[f32]>,
) -> Result<()> {
    let stats = column_stats(values);
    write_atomic(path, |w| {
        write!(w, "gene\tmean\tsd\tmedian\tq05\tq25\tq75\tq95")?;
        if cv_r.is_some() {
            write!(w, "\tcv_r")?;
        }
        writeln!(w)?;
        for (g, (name, s)) in genes.iter().zip(&stats).enumerate() {
            write!(
                w,
                "{name}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                s.mean, s.sd, s.median, s.q05, s.q25, s.q75, s.q95
            )?;
            if let Some(r) = cv_r {
                match r.get(g) {
                    Some(v) if v.is_finite() => write!(w, "\t{v}")?,
                    _ => write!(w, "\tNA")?,
                }
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

/// Writes the per-pathway table from z-space samples [n, G].
pub fn write_pathways_tsv(
    path: &Path,
    z: ArrayView2<'_, f32>,
    pathways: &PathwaySet,
) -> Result<()> {
    let scores = pathway_scores(z, pathways);
    let stats = column_stats(scores.view());
    write_atomic(path, |w| {
        writeln!(w, "pathway\tn_genes\tmean\tsd\tq05\tq95")?;
        for ((name, members), s) in pathways.names.iter().zip(&pathways.members).zip(&stats) {
            let Stats {
                mean, sd, q05, q95, ..
            } = *s;
            writeln!(w, "{name}\t{}\t{mean}\t{sd}\t{q05}\t{q95}", members.len())?;
        }
        Ok(())
    })
}

/// log2(x+1) → x (FPKM-UQ).
pub fn to_fpkm(log2: f32) -> f32 {
    log2.exp2() - 1.0
}

/// One slide's entry in `run.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SlideRecord {
    pub input: PathBuf,
    pub slide: String,
    /// `ok`, `skipped` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tiles clustered into K clusters first (N×D input), else `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiles: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_shift_mean_abs_z: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

impl SlideRecord {
    /// A slide about to run: status "ok" until something says otherwise.
    pub fn new(input: &Path, slide: &str) -> SlideRecord {
        SlideRecord {
            input: input.to_path_buf(),
            slide: slide.to_string(),
            status: "ok".into(),
            error: None,
            tiles: None,
            input_shift_mean_abs_z: None,
            seconds: None,
        }
    }
}

/// `run.json`: everything needed to reproduce or audit a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    pub rnafm_version: String,
    pub onnxruntime_library: Option<String>,
    /// The model's absolute path (as given when it cannot be resolved), so that
    /// `rnafm-eval calibrate` finds it from any folder.
    pub model: PathBuf,
    /// sha256 naming the model's content: of a bundle's `manifest.json`, which lists the
    /// sha256 of every member (so the zip and its unpacked folder share it), or of a model
    /// folder's files. Hashing the whole 1 GB file each run would cost more than the load.
    #[serde(alias = "model_sha256")]
    pub model_id: String,
    pub device: String,
    pub threads: usize,
    /// Arithmetic of the per-step graphs (fp32 or int8).
    #[serde(default)]
    pub precision: String,
    /// The CPU's int8-relevant features (VNNI decides what int8 gains; see `cpu.rs`).
    #[serde(default)]
    pub cpu_features: Vec<String>,
    /// Models the draws were split across (a fold ensemble's k; 1 for a single model).
    #[serde(default = "one")]
    pub models: usize,
    pub samples: usize,
    pub steps: usize,
    pub cfg: f32,
    pub seed: u64,
    pub batch: usize,
    pub unit: String,
    /// Whether the draws were stretched by the bundle's interval calibration, and how.
    #[serde(default)]
    pub calibration: crate::calibration::CalibrationUse,
    pub load_seconds: f64,
    /// Where the load's time went (absent in runs before rnafm 0.1 recorded it).
    #[serde(default)]
    pub load: Option<crate::run::model::LoadProfile>,
    pub total_seconds: f64,
    /// `--maps` settings, when maps were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maps: Option<crate::run::maps::MapSettings>,
    pub slides: Vec<SlideRecord>,
}

fn one() -> usize {
    1
}

impl RunReport {
    pub fn read(path: &Path) -> Result<RunReport> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not an rnafm-run run.json: {e}")))
    }

    /// The settings that decide the numbers in the output files, in words (device, threads
    /// and batch do not: outputs are the same whatever they are).
    pub fn output_settings(&self) -> String {
        format!(
            "model {}{}, {} samples, {} time points, guidance {}, seed {}, {}, {}, {}",
            self.model_id.get(..12).unwrap_or(&self.model_id),
            if self.models > 1 {
                format!(" ({} models)", self.models)
            } else {
                String::new()
            },
            self.samples,
            self.steps,
            self.cfg,
            self.seed,
            self.precision,
            self.unit,
            if self.calibration.applied {
                "calibrated"
            } else {
                "uncalibrated"
            }
        ) + &self.maps.as_ref().map_or(String::new(), |m| {
            format!(
                ", maps ({}, {} draws, {} time points, top {} pathways, genes [{}])",
                m.method,
                m.draws,
                m.steps,
                m.top_pathways,
                m.genes.join(",")
            )
        })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, |w| {
            serde_json::to_writer_pretty(&mut *w, self).map_err(std::io::Error::other)?;
            writeln!(w)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn genes_tsv_has_header_rows_and_cv() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.genes.tsv");
        let v = array![[1.0f32, 10.0], [3.0, 20.0]];
        write_genes_tsv(
            &p,
            &["A".into(), "B".into()],
            v.view(),
            Some(&[0.5, f32::NAN]),
        )
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("\tcv_r"));
        let a: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(a[0], "A");
        assert_eq!(a[1].parse::<f32>().unwrap(), 2.0);
        assert_eq!(a[8], "0.5");
        assert!(lines[2].ends_with("\tNA"));
    }

    #[test]
    fn fpkm_inverts_log2p1() {
        assert!((to_fpkm(3.0) - 7.0).abs() < 1e-6);
        assert_eq!(to_fpkm(0.0), 0.0);
    }
}
