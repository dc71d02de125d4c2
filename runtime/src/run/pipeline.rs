//! The per-slide work of `rnafm-run`: which inputs make up a run (folders expanded, the
//! shard's part kept), each slide's K×D cluster features (as given, k-means of N×D tiles, or
//! tiled and encoded from a whole-slide image), the input-shift check, guided sampling,
//! interval calibration, the reported unit and the output files. The binary keeps the flags,
//! the progress bar, `run.json` and the exit code.

use std::cell::Cell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, ArrayView2};

use crate::calibration::CalibrationUse;
use crate::cluster_means::cluster_means;
use crate::error::{Error, Result};
use crate::features::read_features;
use crate::run::map_outputs::{MapFiles, TileLayout, write_maps};
use crate::run::maps::{MapSettings, choose_targets, cluster_effects};
use crate::run::model::RunModel;
use crate::run::outputs::{
    SlideOutputs, SlideRecord, to_fpkm, write_genes_tsv, write_pathways_tsv,
};
use crate::run::shift::{SHIFT_WARN_MEAN_ABS_Z, mean_abs_z};
use crate::sampler::SampleParams;
use crate::slide::encoder::TileEncoder;
use crate::slide::extract::ExtractOptions;
use crate::slide::options::{TileOptions, is_slide_image, slide_features};
use crate::slide_names::output_name;

/// How the run reports its work as it goes (a progress bar in the CLI).
pub trait Progress {
    /// `n` integration steps done (a slide costs [`SlidePipeline::steps_per_slide`]).
    fn advance(&self, n: u64);
    /// What is being done now (the slide's name, tiles encoded so far).
    fn message(&self, text: &str);
    /// A warning about the current slide, shown without breaking the progress display.
    fn warn(&self, text: &str);
    /// A slide is finished (ok, skipped or failed).
    fn slide_done(&self, record: &SlideRecord);
}

/// No progress display (tests, library callers).
pub struct Silent;

impl Progress for Silent {
    fn advance(&self, _: u64) {}
    fn message(&self, _: &str) {}
    fn warn(&self, _: &str) {}
    fn slide_done(&self, _: &SlideRecord) {}
}

/// What the run does besides sampling.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Report FPKM-UQ instead of log2(FPKM-UQ+1).
    pub fpkm: bool,
    /// Also write every sample as `<slide>.samples.npy`.
    pub save_samples: bool,
    /// Redo slides whose outputs exist (else they are skipped).
    pub overwrite: bool,
    /// Do not apply the model's interval calibration.
    pub no_calibration: bool,
    /// Tiling of whole-slide images; what it leaves open comes from the model's manifest.
    pub tiles: TileOptions,
    /// Tiles per encoder call.
    pub tile_batch: usize,
    /// The tile encoder's file, for messages.
    pub encoder_path: Option<PathBuf>,
    /// `--maps`: occlusion maps of slides whose tiles have coordinates.
    pub maps: Option<MapSettings>,
}

/// A loaded model (and tile encoder) with the run's settings, ready for slides.
pub struct SlidePipeline {
    pub model: RunModel,
    encoder: Option<TileEncoder>,
    pub params: SampleParams,
    /// What the run does about interval calibration (`run.json`).
    pub calibration: CalibrationUse,
    settings: RunSettings,
    /// Pathway tokens per gene, for a calibration with gene groups (counted once a run).
    pathway_counts: Vec<usize>,
}

impl SlidePipeline {
    /// `params` with the model's defaults already filled in; the calibration fitted at its
    /// guidance scale and step count is chosen here (a warning says why there is none).
    pub fn new(
        mut model: RunModel,
        encoder: Option<TileEncoder>,
        params: SampleParams,
        settings: RunSettings,
    ) -> Self {
        if model.normalization.is_none() {
            tracing::warn!("the model has no normalisation statistics; outputs are z-scores");
        }
        let calibration = CalibrationUse::choose(
            &model.calibration,
            params.cfg,
            params.steps,
            params.samples,
            settings.no_calibration,
        );
        if let (Some(reason), false) = (&calibration.reason, settings.no_calibration) {
            tracing::warn!("intervals are not calibrated: {reason}");
        }
        if let Some(w) = &calibration.warning {
            tracing::warn!("{w}");
        }
        // Only the chosen calibration is applied to the draws.
        model.calibration = calibration.calibration.iter().cloned().collect();
        let pathway_counts = model.pathways.pathway_counts();
        SlidePipeline {
            model,
            encoder,
            params,
            calibration,
            settings,
            pathway_counts,
        }
    }

    /// The unit of the written values.
    pub fn unit(&self) -> &'static str {
        if self.model.normalization.is_none() {
            "z"
        } else if self.settings.fpkm {
            "FPKM-UQ"
        } else {
            "log2(FPKM-UQ+1)"
        }
    }

    /// Integration steps (batches × Euler steps) one slide costs.
    pub fn steps_per_slide(&self) -> usize {
        let maps = self.settings.maps.as_ref().map_or(0, |m| {
            (self.model.clusters + 1) * self.model.graphs.ticks(&m.params(&self.params))
        });
        self.model.graphs.ticks(&self.params) + maps
    }

    /// Runs every slide into `out`; a slide that fails is recorded (with its one-line error)
    /// and the others go on. Two inputs that would write the same output names fail.
    pub fn run_all(
        &mut self,
        slides: &[PathBuf],
        out: &Path,
        progress: &dyn Progress,
    ) -> Vec<SlideRecord> {
        if self.group_size() > 1 {
            return self.run_grouped(slides, out, progress);
        }
        let mut records = Vec::with_capacity(slides.len());
        let mut seen = HashSet::new();
        for path in slides {
            let name = output_name(path);
            let rec = if seen.insert(name.clone()) {
                self.process_slide(path, out, progress)
            } else {
                let mut rec = SlideRecord::new(path, &name);
                rec.status = "failed".into();
                rec.error = Some(format!(
                    "{}: another input already writes outputs named {name}",
                    path.display()
                ));
                rec
            };
            progress.slide_done(&rec);
            records.push(rec);
        }
        records
    }

    /// Whether the slide's outputs are all there and may be kept (no `--overwrite`). Only
    /// inputs that can have tile coordinates get maps (the others get a warning).
    fn already_done(&self, path: &Path, outs: &SlideOutputs) -> bool {
        let maps = self.settings.maps.is_some()
            && (is_slide_image(path) || crate::features::is_h5_path(path));
        !self.settings.overwrite && outs.complete(self.settings.save_samples, maps)
    }

    /// One slide into `out`: skipped when its outputs exist (unless overwriting), else run;
    /// the record says which, how long it took, and the one-line error if it failed.
    pub fn process_slide(
        &mut self,
        path: &Path,
        out: &Path,
        progress: &dyn Progress,
    ) -> SlideRecord {
        let per_slide = self.steps_per_slide() as u64;
        let name = output_name(path);
        progress.message(&name);
        let outs = SlideOutputs::new(out, &name);
        let mut rec = SlideRecord::new(path, &name);
        if self.already_done(path, &outs) {
            rec.status = "skipped".into();
            progress.advance(per_slide);
            return rec;
        }
        let started = Instant::now();
        let done = Cell::new(0u64);
        let counted = Counted {
            inner: progress,
            done: &done,
        };
        match self.run_slide(path, &outs, &mut rec, &counted) {
            Ok(()) => rec.seconds = Some(started.elapsed().as_secs_f64()),
            Err(e) => {
                rec.status = "failed".into();
                rec.error = Some(e.to_string().replace('\n', " "));
                progress.advance(per_slide.saturating_sub(done.get()));
            }
        }
        rec
    }

    /// One slide: features → clusters → draws → calibrated, in the unit → files.
    fn run_slide(
        &mut self,
        path: &Path,
        outs: &SlideOutputs,
        rec: &mut SlideRecord,
        progress: &dyn Progress,
    ) -> Result<()> {
        let prepared = self.prepare(path, rec, progress)?;
        let genes = self.model.genes.len();
        let mut tick = || progress.advance(1);
        let z = self
            .model
            .graphs
            .sample(prepared.clusters.view(), genes, &self.params, &mut tick)
            .map_err(|e| Error::invalid(path, e.to_string()))?;
        self.finish(path, outs, prepared, z, progress)
    }

    /// A slide's K×D input (and tile layout), read, clustered and checked for input shift.
    fn prepare(
        &mut self,
        path: &Path,
        rec: &mut SlideRecord,
        progress: &dyn Progress,
    ) -> Result<Prepared> {
        let (clusters, layout) = if is_slide_image(path) {
            self.image_clusters(path, rec, progress)?
        } else {
            slide_clusters(&self.model, path, self.params.seed, rec)?
        };
        if let Some((mean, sd)) = &self.model.feature_stats
            && let Some(z) = mean_abs_z(clusters.view(), mean, sd)
        {
            rec.input_shift_mean_abs_z = Some(z);
            if z > SHIFT_WARN_MEAN_ABS_Z {
                progress.warn(&format!(
                    "{}: features lie far from the training slides (mean |z| {z:.1} > {SHIFT_WARN_MEAN_ABS_Z}); check the encoder and preprocessing, predictions are extrapolations",
                    path.display()
                ));
            }
        }
        Ok(Prepared { clusters, layout })
    }

    /// A slide's draws `z` → calibrated, in the unit → its files (all or none), then maps.
    fn finish(
        &mut self,
        path: &Path,
        outs: &SlideOutputs,
        prepared: Prepared,
        mut z: Array2<f32>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let model = &self.model;
        if let Some(c) = model.calibration.first() {
            c.apply(z.view_mut(), &self.pathway_counts);
        }
        let values = to_unit(z.view(), model, self.settings.fpkm);
        // Never an "ok" table of NaN: features far outside anything the model has seen
        // (e.g. values near 1e30) overflow inside the network.
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(
                path,
                format!(
                    "the model's draws are not finite ({bad}); the features lie far outside the training range (check the encoder and preprocessing)"
                ),
            ));
        }
        let Prepared { clusters, layout } = prepared;
        let written = self
            .write_outputs(outs, z.view(), values.view())
            .and_then(|_| self.maps(path, outs, clusters.view(), z.view(), layout, progress));
        if written.is_err() {
            // All of a slide's files or none: a failure part-way (a name too long for the file
            // system, a full disk) must not leave some of them.
            for p in [&outs.genes, &outs.pathways, &outs.samples] {
                let _ = std::fs::remove_file(p);
            }
        }
        written
    }

    /// Slides sampled together: with fewer draws per slide than a batch holds, the rows of
    /// several slides fill one batch (`Ensemble::sample_many`); 1 otherwise.
    pub fn group_size(&self) -> usize {
        (self.params.batch / self.params.samples.max(1)).max(1)
    }

    /// [`Self::run_all`] with the draws of [`Self::group_size`] slides sampled together; every
    /// slide's numbers are those it gets alone.
    fn run_grouped(
        &mut self,
        slides: &[PathBuf],
        out: &Path,
        progress: &dyn Progress,
    ) -> Vec<SlideRecord> {
        let per_slide = self.steps_per_slide() as u64;
        let group = self.group_size();
        let mut records: Vec<Option<SlideRecord>> = vec![None; slides.len()];
        let mut seen = HashSet::new();
        let mut pending: Vec<Pending> = Vec::new();
        for (idx, path) in slides.iter().enumerate() {
            let name = output_name(path);
            let mut rec = SlideRecord::new(path, &name);
            if !seen.insert(name.clone()) {
                rec.status = "failed".into();
                rec.error = Some(format!(
                    "{}: another input already writes outputs named {name}",
                    path.display()
                ));
                progress.advance(per_slide);
                progress.slide_done(&rec);
                records[idx] = Some(rec);
                continue;
            }
            progress.message(&name);
            let outs = SlideOutputs::new(out, &name);
            if self.already_done(path, &outs) {
                rec.status = "skipped".into();
                progress.advance(per_slide);
                progress.slide_done(&rec);
                records[idx] = Some(rec);
                continue;
            }
            let started = Instant::now();
            match self.prepare(path, &mut rec, progress) {
                Ok(prepared) => pending.push(Pending {
                    idx,
                    path: path.clone(),
                    outs,
                    rec,
                    prepared,
                    seconds: started.elapsed().as_secs_f64(),
                }),
                Err(e) => {
                    rec.status = "failed".into();
                    rec.error = Some(e.to_string().replace('\n', " "));
                    progress.advance(per_slide);
                    progress.slide_done(&rec);
                    records[idx] = Some(rec);
                }
            }
            if pending.len() == group {
                self.finish_group(&mut pending, &mut records, progress);
            }
        }
        self.finish_group(&mut pending, &mut records, progress);
        records
            .into_iter()
            .map(|r| r.expect("every slide is recorded"))
            .collect()
    }

    /// Samples the pending slides together, then writes each one's files.
    fn finish_group(
        &mut self,
        pending: &mut Vec<Pending>,
        records: &mut [Option<SlideRecord>],
        progress: &dyn Progress,
    ) {
        if pending.is_empty() {
            return;
        }
        let per_slide = self.steps_per_slide() as u64;
        let sampling = self.model.graphs.ticks(&self.params) as u64;
        let genes = self.model.genes.len();
        let started = Instant::now();
        let inputs: Vec<ArrayView2<'_, f32>> =
            pending.iter().map(|p| p.prepared.clusters.view()).collect();
        let drawn = self
            .model
            .graphs
            .sample_many(&inputs, genes, &self.params, &mut || {});
        // The group's sampling time, shared out.
        let share = started.elapsed().as_secs_f64() / pending.len() as f64;
        let mut drawn = match drawn {
            Ok(zs) => zs.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => pending.iter().map(|_| Err(e.to_string())).collect(),
        };
        for (p, z) in pending.drain(..).zip(drawn.drain(..)) {
            let Pending {
                idx,
                path,
                outs,
                mut rec,
                prepared,
                seconds,
            } = p;
            progress.message(&rec.slide);
            progress.advance(sampling);
            let done = Cell::new(sampling);
            let counted = Counted {
                inner: progress,
                done: &done,
            };
            let t0 = Instant::now();
            let result = z
                .map_err(|e| Error::invalid(&path, e))
                .and_then(|z| self.finish(&path, &outs, prepared, z, &counted));
            match result {
                Ok(()) => rec.seconds = Some(seconds + share + t0.elapsed().as_secs_f64()),
                Err(e) => {
                    rec.status = "failed".into();
                    rec.error = Some(e.to_string().replace('\n', " "));
                    progress.advance(per_slide.saturating_sub(done.get()));
                }
            }
            progress.slide_done(&rec);
            records[idx] = Some(rec);
        }
    }

    /// `--maps` for one slide (nothing without it); a slide without tile coordinates gets a
    /// warning and no maps.
    fn maps(
        &mut self,
        path: &Path,
        outs: &SlideOutputs,
        clusters: ArrayView2<'_, f32>,
        z: ArrayView2<'_, f32>,
        layout: Option<TileLayout>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let Some(settings) = self.settings.maps.clone() else {
            return Ok(());
        };
        let per_map = self.model.graphs.ticks(&settings.params(&self.params)) as u64;
        let Some(layout) = layout else {
            progress.warn(&format!(
                "{}: no tile coordinates, so no maps (they need a TRIDENT/CLAM .h5 or a whole-slide image)",
                path.display()
            ));
            progress.advance((clusters.nrows() as u64 + 1) * per_map);
            return Ok(());
        };
        progress.message(&format!("{} maps", output_name(path)));
        let targets = choose_targets(&self.model, z, &settings);
        let mut tick = || progress.advance(1);
        let effects = cluster_effects(
            &mut self.model,
            clusters,
            targets,
            settings.method,
            &settings.params(&self.params),
            &mut tick,
        )
        .map_err(|e| Error::invalid(path, e.to_string()))?;
        let dir = outs.genes.parent().unwrap_or(Path::new("."));
        let files = MapFiles::new(dir, &output_name(path), &effects);
        write_maps(&files, &effects, &layout)
    }

    /// The slide's files from its draws `z` (z units) and `values` (the reported unit).
    fn write_outputs(
        &self,
        outs: &SlideOutputs,
        z: ArrayView2<'_, f32>,
        values: ArrayView2<'_, f32>,
    ) -> Result<()> {
        let model = &self.model;
        write_genes_tsv(&outs.genes, &model.genes, values, model.cv_r.as_deref())?;
        write_pathways_tsv(&outs.pathways, z, &model.pathways)?;
        if self.settings.save_samples {
            crate::npy::write_npy(&outs.samples, &values)?;
        }
        Ok(())
    }

    /// How a whole-slide image is tiled for the model: the flags, else the model's manifest,
    /// else rnafm-features' defaults (a model folder has no manifest).
    fn extract_options(&self) -> ExtractOptions {
        let d = ExtractOptions::default();
        let (mpp, tile) = self.model.slide.as_ref().map_or((d.tile_mpp, d.tile), |s| {
            (f64::from(s.microns_per_pixel), s.tile_size as u32)
        });
        self.settings.tiles.extract_options(
            mpp,
            tile,
            self.model.clusters,
            self.params.seed,
            self.settings.tile_batch,
        )
    }

    /// K×D cluster features of a whole-slide image, from the tile encoder.
    fn image_clusters(
        &mut self,
        path: &Path,
        rec: &mut SlideRecord,
        progress: &dyn Progress,
    ) -> Result<(Array2<f32>, Option<TileLayout>)> {
        let opts = self.extract_options();
        let Some(encoder) = self.encoder.as_mut() else {
            return Err(Error::invalid(
                path,
                "a whole-slide image needs --encoder ENCODER.onnx",
            ));
        };
        let name = output_name(path);
        let ex = slide_features(path, encoder, &opts, &|done, total| {
            progress.message(&format!("{name} tiles {done}/{total}"))
        })?;
        progress.message(&name);
        let d = ex.features.ncols();
        if d != self.model.feat_dim {
            return Err(Error::invalid(
                path,
                format!(
                    "the encoder {} gives {d}-dimensional features but the model expects {} (is it the encoder the model was trained with?)",
                    self.settings
                        .encoder_path
                        .as_deref()
                        .unwrap_or(Path::new("?"))
                        .display(),
                    self.model.feat_dim
                ),
            ));
        }
        rec.tiles = Some(ex.tiles.len());
        let km = ex
            .kmeans
            .ok_or_else(|| Error::Runtime("tiles were not clustered".into()))?;
        let layout = TileLayout {
            corners: ex.tiles.iter().map(|t| (t.x as i64, t.y as i64)).collect(),
            size0: ex.plan.size0,
            labels: km.labels,
            thumbnail: Some((ex.plan.thumbnail, ex.plan.width, ex.plan.height)),
        };
        Ok((km.centers, Some(layout)))
    }
}

/// A slide read and clustered, ready to sample.
struct Prepared {
    clusters: Array2<f32>,
    layout: Option<TileLayout>,
}

/// A slide of a group waiting for the group's draws.
struct Pending {
    idx: usize,
    path: PathBuf,
    outs: SlideOutputs,
    rec: SlideRecord,
    prepared: Prepared,
    /// Seconds spent on it so far.
    seconds: f64,
}

/// Counts the steps a slide has reported, so a failed slide can complete its share.
struct Counted<'a> {
    inner: &'a dyn Progress,
    done: &'a Cell<u64>,
}

impl Progress for Counted<'_> {
    fn advance(&self, n: u64) {
        self.done.set(self.done.get() + n);
        self.inner.advance(n);
    }
    fn message(&self, text: &str) {
        self.inner.message(text);
    }
    fn warn(&self, text: &str) {
        self.inner.warn(text);
    }
    fn slide_done(&self, record: &SlideRecord) {
        self.inner.slide_done(record);
    }
}

/// K×D cluster features of a slide: as given, or k-means of N×D tiles; with the tiles'
/// layout when the file has coordinates (TRIDENT/CLAM `.h5`).
fn slide_clusters(
    model: &RunModel,
    path: &Path,
    seed: u64,
    rec: &mut SlideRecord,
) -> Result<(Array2<f32>, Option<TileLayout>)> {
    let (f, placed) = read_with_placement(path)?;
    if f.ncols() != model.feat_dim {
        return Err(Error::invalid(
            path,
            format!(
                "features are {}-dimensional but the model expects {} (is it the right encoder?)",
                f.ncols(),
                model.feat_dim
            ),
        ));
    }
    let cm = cluster_means(f, model.clusters, seed, path)?;
    rec.tiles = cm.tiles;
    let layout = placed.zip(cm.labels).map(|(p, labels)| TileLayout {
        size0: p
            .size0
            .or_else(|| TileLayout::spacing(&p.corners))
            .unwrap_or(1.0),
        corners: p.corners,
        labels,
        thumbnail: p.thumbnail,
    });
    Ok((cm.means, layout))
}

/// Where a tile file's tiles lie: corners, side (level-0 px, when stated) and the slide's
/// thumbnail (when the file holds one).
struct Placement {
    corners: Vec<(i64, i64)>,
    size0: Option<f64>,
    thumbnail: Option<(image::RgbImage, u32, u32)>,
}

#[cfg(feature = "hdf5")]
fn read_with_placement(path: &Path) -> Result<(Array2<f32>, Option<Placement>)> {
    if !crate::features::is_h5_path(path) {
        return Ok((read_features(path)?, None));
    }
    let t = crate::features::read_h5_tiles(path)?;
    let thumbnail = t.thumbnail.and_then(|th| {
        let (h, w, _) = th.pixels.dim();
        let raw = th.pixels.as_standard_layout().iter().copied().collect();
        image::RgbImage::from_raw(w as u32, h as u32, raw).map(|img| (img, th.width0, th.height0))
    });
    let placed = t.coords.map(|c| Placement {
        corners: c.rows().into_iter().map(|r| (r[0], r[1])).collect(),
        size0: t.geometry.patch_size_level0,
        thumbnail,
    });
    Ok((t.features, placed))
}

#[cfg(not(feature = "hdf5"))]
fn read_with_placement(path: &Path) -> Result<(Array2<f32>, Option<Placement>)> {
    Ok((read_features(path)?, None))
}

/// z samples → the reported unit.
fn to_unit(z: ArrayView2<'_, f32>, model: &RunModel, fpkm: bool) -> Array2<f32> {
    let Some(norm) = &model.normalization else {
        return z.to_owned();
    };
    let mut out = z.to_owned();
    for mut row in out.rows_mut() {
        for (g, v) in row.iter_mut().enumerate() {
            let l = norm.from_z(g, *v);
            *v = if fpkm { to_fpkm(l) } else { l };
        }
    }
    out
}

/// The run's slides: folders expanded into their .npy/.npz/.h5 files (sorted), then the part
/// `shard` = (i, n) keeps (every n-th from i). Whole-slide images need an encoder
/// (`images_allowed`). Mistakes in what was asked for are [`Error::Usage`].
pub fn collect_slides(
    inputs: &[PathBuf],
    images_allowed: bool,
    shard: Option<(usize, usize)>,
) -> Result<Vec<PathBuf>> {
    if inputs.is_empty() {
        return Err(Error::Usage(
            "no slide features given (see rnafm-run --help)".into(),
        ));
    }
    let mut all = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && (matches!(f.extension().and_then(|x| x.to_str()), Some("npy" | "npz"))
                            || crate::features::is_h5_path(f))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: folder holds no .npy/.npz/.h5 files",
                    p.display()
                )));
            }
            all.extend(found);
        } else {
            all.push(p.clone());
        }
    }
    if !images_allowed && let Some(p) = all.iter().find(|p| is_slide_image(p)) {
        return Err(Error::Usage(format!(
            "{}: a whole-slide image needs --encoder ENCODER.onnx (the tile encoder the model was trained with), or run rnafm-features first",
            p.display()
        )));
    }
    Ok(match shard {
        Some((i, n)) => all
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n.max(1) == i)
            .map(|(_, p)| p)
            .collect(),
        None => all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_sorted_and_shards_partition_them() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.npy", "a.npz", "c.npy", "notes.txt"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let all = collect_slides(&[dir.path().to_path_buf()], false, None).unwrap();
        let names: Vec<String> = all.iter().map(|p| output_name(p)).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let s0 = collect_slides(&[dir.path().to_path_buf()], false, Some((0, 2))).unwrap();
        let s1 = collect_slides(&[dir.path().to_path_buf()], false, Some((1, 2))).unwrap();
        assert_eq!((s0.len(), s1.len()), (2, 1));
        assert!(s0.iter().all(|p| !s1.contains(p)));
    }

    #[test]
    fn usage_mistakes_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            collect_slides(&[], false, None),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            collect_slides(&[dir.path().to_path_buf()], false, None),
            Err(Error::Usage(_))
        ));
        let svs = dir.path().join("x.svs");
        let e = collect_slides(std::slice::from_ref(&svs), false, None).unwrap_err();
        assert!(
            matches!(&e, Error::Usage(m) if m.contains("--encoder")),
            "{e}"
        );
        assert_eq!(collect_slides(&[svs], true, None).unwrap().len(), 1);
    }
}
