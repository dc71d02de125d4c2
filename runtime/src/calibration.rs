//! Post-hoc calibration of sampled uncertainty. Guided sampling (s > 1) and a briefly
//! trained model give draws whose spread is too narrow, so their central intervals cover
//! the truth less often than their level says. A calibration stores, per interval level L,
//! a factor c_L fitted on slides the model did not train on and that are not scored later
//! (a fold's validation patients, and its held-out ones when it is scored on other slides):
//! the conformal (1+1/n)·L quantile of the score
//! s = (y − median)/(q_{(1+L)/2} − median) above the median, (median − y)/(median − q_{(1−L)/2})
//! below it, so that stretching each interval's half-widths by c_L around the median covers
//! a fraction L of the fit's values.
//!
//! `rnafm-run` applies it to the draws themselves: a draw at rank i of n sits at central
//! level u = |2i/(n−1) − 1| and moves to median + c(u)·(x − median), with c interpolated
//! linearly between the fitted levels (constant outside them). Every summary (sd, quantiles,
//! pathway scores) and saved sample then carries the calibration. It holds only for the
//! guidance scale and step count it was fitted at.
//!
//! Genes are calibrated in groups by how many pathway tokens hold them (`GeneGroup`): the
//! raw draws of genes in many pathways are far narrower than those of background genes and
//! genes in one to three (a gene's velocity averages the heads of all its pathways), so one
//! factor for all genes left the first under-covered and the second over-covered (README,
//! "Interval calibration"). A calibration without groups (written before them, or fitted
//! with `--no-gene-groups`) has one set of factors for every gene.

use crate::stats::quantile_sorted;
use std::path::Path;

use ndarray::{ArrayView2, ArrayView3, ArrayViewMut2};

use crate::error::{Error, Result};

/// Central interval levels fitted by default (those the evaluation reports).
pub const DEFAULT_LEVELS: [f64; 3] = [0.5, 0.8, 0.9];

/// The half-width factor of one central interval level.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelFactor {
    /// Central interval level in (0, 1), e.g. 0.9 for the 5–95% interval.
    pub level: f64,
    /// Multiplier of the interval's half-widths around the median.
    pub factor: f64,
    /// Coverage of the uncalibrated interval on the fit's values (for the record).
    pub coverage_before: f64,
}

/// Interval calibration for one sampling setting (manifest field `calibration`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Guidance scale of the draws it was fitted on.
    pub cfg: f32,
    /// Time points of the Euler grid of those draws.
    pub steps: usize,
    /// Fitted levels in ascending order.
    pub levels: Vec<LevelFactor>,
    /// Slides and (slide, gene) values of the fit.
    pub slides: usize,
    pub values: usize,
    /// What the fit ran on, e.g. "validation patients of fold 0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_on: Option<String>,
    /// Draws per slide of the fit. The factor depends on it: the outer quantiles of fewer
    /// draws sit closer to the median, so a factor fitted on fewer draws than a run makes
    /// widens that run's intervals too much, and one fitted on more too little (README,
    /// "Interval calibration"). Absent in calibrations written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draws: Option<usize>,
    /// Factors per group of genes by pathway count, covering every count from 0 up
    /// (`levels` then only records the fit over all genes). Empty: `levels` for every gene.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GeneGroup>,
    /// Fitted with `--anchor-loo`: each slide whose anchor was refitted on it was scored
    /// against its leave-one-out anchor. A refitted checkpoint needs it (`anchor_refit`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anchor_loo: bool,
}

/// The factors of the genes held by `min_pathways..=max_pathways` pathway tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneGroup {
    /// Fewest pathway tokens a gene of the group is in (0: background genes).
    pub min_pathways: usize,
    /// Most; none: no upper bound (the last group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pathways: Option<usize>,
    /// The model's genes in the group, and the (slide, gene) values of its fit.
    pub genes: usize,
    pub values: usize,
    /// The group's factors, at the calibration's levels.
    pub levels: Vec<LevelFactor>,
}

impl GeneGroup {
    /// Whether a gene in `n` pathway tokens belongs to the group.
    pub fn holds(&self, n: usize) -> bool {
        n >= self.min_pathways && self.max_pathways.is_none_or(|m| n <= m)
    }

    /// "4–10 pathways", "background genes", "11+ pathways".
    pub fn label(&self) -> String {
        match self.max_pathways {
            Some(0) => "background genes".into(),
            Some(m) if m == self.min_pathways => {
                format!("{m} pathway{}", if m == 1 { "" } else { "s" })
            }
            Some(m) => format!("{}–{m} pathways", self.min_pathways),
            None => format!("{}+ pathways", self.min_pathways),
        }
    }
}

/// Lower edges of the default gene groups by pathway count: background genes, 1, 2–3, 4–10
/// and 11 or more pathways. They come from the raw spread by pathway count on bench cohorts
/// 1–3 (README, "Why the raw draws are too narrow"), where the spread fell between 2–3 and
/// 4–10 pathways; cohorts 2, 5, 7 and 8 checked them (README, "Genes in many pathways").
pub const GROUP_EDGES: [usize; 5] = [0, 1, 2, 4, 11];

/// A group with fewer genes than this joins its neighbour: a factor needs many values, and
/// the values of one gene over slides are not independent.
pub const MIN_GROUP_GENES: usize = 50;

/// The pathway-count ranges of the groups for a model whose genes sit in `counts` pathway
/// tokens: `GROUP_EDGES`, each range with fewer than `MIN_GROUP_GENES` genes merged into
/// the next (the last into the one before). One range `(0, None)` when no split leaves two.
pub fn group_ranges(counts: &[usize]) -> Vec<(usize, Option<usize>)> {
    let genes_in = |lo: usize, hi: Option<usize>| {
        counts
            .iter()
            .filter(|&&n| n >= lo && hi.is_none_or(|h| n <= h))
            .count()
    };
    let mut ranges: Vec<(usize, Option<usize>)> = GROUP_EDGES
        .iter()
        .enumerate()
        .map(|(i, &lo)| (lo, GROUP_EDGES.get(i + 1).map(|&next| next - 1)))
        .collect();
    let mut i = 0;
    while ranges.len() > 1 && i < ranges.len() {
        if genes_in(ranges[i].0, ranges[i].1) >= MIN_GROUP_GENES {
            i += 1;
        } else if i + 1 < ranges.len() {
            ranges[i].1 = ranges[i + 1].1;
            ranges.remove(i + 1);
        } else {
            ranges[i - 1].1 = ranges[i].1;
            ranges.remove(i);
        }
    }
    ranges
}

/// The fit's scores for one level at one (slide, gene): see the module docs.
fn score(sorted: &[f64], y: f64, level: f64) -> f64 {
    let m = quantile_sorted(sorted, 0.5);
    let (d, half) = if y >= m {
        (y - m, quantile_sorted(sorted, (1.0 + level) / 2.0) - m)
    } else {
        (m - y, m - quantile_sorted(sorted, (1.0 - level) / 2.0))
    };
    if d == 0.0 {
        0.0
    } else if half <= 0.0 {
        f64::INFINITY
    } else {
        d / half
    }
}

/// The calibration scores of every finite (slide, gene) value, per level, with its gene.
struct Scores {
    per_level: Vec<Vec<f64>>,
    gene: Vec<usize>,
}

fn scores(
    samples: ArrayView3<'_, f32>,
    truth: ArrayView2<'_, f32>,
    levels: &[f64],
    origin: &Path,
) -> Result<Scores> {
    let (n, s, g) = samples.dim();
    if (s, g) != truth.dim() {
        return Err(Error::invalid(
            origin,
            format!(
                "draws cover {s}×{g} (slides × genes) but the truth is {:?}",
                truth.dim()
            ),
        ));
    }
    if n < 2 || s * g == 0 {
        return Err(Error::invalid(
            origin,
            "calibration needs at least 2 draws of at least one value",
        ));
    }
    if levels.iter().any(|&l| !(l > 0.0 && l < 1.0)) {
        return Err(Error::invalid(origin, "interval levels must lie in (0, 1)"));
    }
    let mut per_level = vec![Vec::with_capacity(s * g); levels.len()];
    let mut gene = Vec::with_capacity(s * g);
    let mut buf = vec![0f64; n];
    for i in 0..s {
        for j in 0..g {
            let y = f64::from(truth[[i, j]]);
            if !y.is_finite() {
                continue;
            }
            for (b, &v) in buf.iter_mut().zip(samples.slice(ndarray::s![.., i, j])) {
                *b = f64::from(v);
            }
            buf.sort_by(f64::total_cmp);
            for (sc, &l) in per_level.iter_mut().zip(levels) {
                sc.push(score(&buf, y, l));
            }
            gene.push(j);
        }
    }
    Ok(Scores { per_level, gene })
}

/// The factors of the values whose gene passes `keep`; `what` names them in errors.
fn factors(
    sc: &Scores,
    levels: &[f64],
    keep: impl Fn(usize) -> bool,
    what: &str,
    origin: &Path,
) -> Result<(Vec<LevelFactor>, usize)> {
    let mut out = Vec::with_capacity(levels.len());
    let mut m = 0;
    for (all, &level) in sc.per_level.iter().zip(levels) {
        let mut v: Vec<f64> = all
            .iter()
            .zip(&sc.gene)
            .filter(|&(_, &g)| keep(g))
            .map(|(&x, _)| x)
            .collect();
        m = v.len();
        if m == 0 {
            return Err(Error::invalid(
                origin,
                format!("no finite true value of {what} to fit on"),
            ));
        }
        v.sort_by(f64::total_cmp);
        let coverage_before = v.iter().filter(|&&x| x <= 1.0).count() as f64 / m as f64;
        // Split-conformal rank: the ⌈(m+1)L⌉-th smallest score covers ≥ L of new values.
        let k = (((m + 1) as f64 * level).ceil() as usize).clamp(1, m);
        let factor = v[k - 1];
        if !factor.is_finite() {
            return Err(Error::invalid(
                origin,
                format!(
                    "cannot calibrate the {:.0}% interval of {what}: too many values lie outside draws that do not vary",
                    level * 100.0
                ),
            ));
        }
        out.push(LevelFactor {
            level,
            // A zero factor (every truth at its median) would collapse the draws.
            factor: factor.max(1e-3),
            coverage_before,
        });
    }
    Ok((out, m))
}

/// Fits the factors of `levels` from draws `samples` [n, slides, genes] and the true
/// values `truth` [slides, genes] (any per-gene affine scale, e.g. log2(FPKM-UQ+1)), one
/// set for all genes. `origin` names the data in errors.
pub fn fit_levels(
    samples: ArrayView3<'_, f32>,
    truth: ArrayView2<'_, f32>,
    levels: &[f64],
    origin: &Path,
) -> Result<Vec<LevelFactor>> {
    let sc = scores(samples, truth, levels, origin)?;
    Ok(factors(&sc, levels, |_| true, "any gene", origin)?.0)
}

/// As [`fit_levels`], plus one set per group of genes by pathway count (`group_ranges`
/// of `pathway_counts`, the model's count per gene in the draws' column order). The
/// groups are empty when the genes do not split into two.
pub fn fit_grouped(
    samples: ArrayView3<'_, f32>,
    truth: ArrayView2<'_, f32>,
    levels: &[f64],
    pathway_counts: &[usize],
    origin: &Path,
) -> Result<(Vec<LevelFactor>, Vec<GeneGroup>)> {
    let g = samples.dim().2;
    if pathway_counts.len() != g {
        return Err(Error::invalid(
            origin,
            format!(
                "the draws have {g} genes but the model's pathways index {}",
                pathway_counts.len()
            ),
        ));
    }
    let sc = scores(samples, truth, levels, origin)?;
    let all = factors(&sc, levels, |_| true, "any gene", origin)?.0;
    let ranges = group_ranges(pathway_counts);
    if ranges.len() < 2 {
        return Ok((all, Vec::new()));
    }
    let mut groups = Vec::with_capacity(ranges.len());
    for (min_pathways, max_pathways) in ranges {
        let mut group = GeneGroup {
            min_pathways,
            max_pathways,
            genes: 0,
            values: 0,
            levels: Vec::new(),
        };
        group.genes = pathway_counts.iter().filter(|&&n| group.holds(n)).count();
        let (lv, m) = factors(
            &sc,
            levels,
            |j| group.holds(pathway_counts[j]),
            &format!("genes in {}", group.label()),
            origin,
        )?;
        group.levels = lv;
        group.values = m;
        groups.push(group);
    }
    Ok((all, groups))
}

/// The half-width factor at central level `u` of `levels`: linear between fitted levels,
/// constant beyond the first and last.
fn factor_at(l: &[LevelFactor], u: f64) -> f64 {
    if u <= l[0].level {
        return l[0].factor;
    }
    for w in l.windows(2) {
        if u <= w[1].level {
            let t = (u - w[0].level) / (w[1].level - w[0].level);
            return w[0].factor + t * (w[1].factor - w[0].factor);
        }
    }
    l[l.len() - 1].factor
}

impl Calibration {
    /// Checks levels (ascending, in (0, 1)), factors (finite, > 0) and the draw count (≥ 2).
    pub fn validate(&self, origin: &Path) -> Result<()> {
        if self.levels.is_empty() {
            return Err(Error::invalid(origin, "calibration has no levels"));
        }
        for w in self.levels.windows(2) {
            if w[0].level >= w[1].level {
                return Err(Error::invalid(
                    origin,
                    "calibration levels must be strictly ascending",
                ));
            }
        }
        for l in &self.levels {
            if !(l.level > 0.0 && l.level < 1.0 && l.factor.is_finite() && l.factor > 0.0) {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "calibration level {} has factor {}; levels must lie in (0, 1) and factors be finite and > 0",
                        l.level, l.factor
                    ),
                ));
            }
        }
        if self.steps < 2 || !self.cfg.is_finite() {
            return Err(Error::invalid(
                origin,
                "calibration cfg must be finite and steps >= 2",
            ));
        }
        self.validate_groups(origin)?;
        if self.draws.is_some_and(|d| d < 2) {
            return Err(Error::invalid(
                origin,
                "calibration draws must be >= 2 (its factors come from quantiles of the draws)",
            ));
        }
        Ok(())
    }

    /// Groups, when there are any, cover every pathway count once, from 0 up, each with
    /// factors at the calibration's levels.
    fn validate_groups(&self, origin: &Path) -> Result<()> {
        let Some(last) = self.groups.last() else {
            return Ok(());
        };
        let bad = |what: String| {
            Err(Error::invalid(
                origin,
                format!("calibration groups: {what}"),
            ))
        };
        if self.groups[0].min_pathways != 0 || last.max_pathways.is_some() {
            return bad(
                "they must start at 0 pathways and the last must have no upper bound".into(),
            );
        }
        for w in self.groups.windows(2) {
            if w[0].max_pathways.map(|m| m + 1) != Some(w[1].min_pathways) {
                return bad(format!(
                    "{} is followed by {}; each group must start where the one before ends",
                    w[0].label(),
                    w[1].label()
                ));
            }
        }
        for g in &self.groups {
            let same_levels = g.levels.len() == self.levels.len()
                && g.levels
                    .iter()
                    .zip(&self.levels)
                    .all(|(a, b)| a.level == b.level);
            if !same_levels {
                return bad(format!(
                    "{} is fitted at other levels than the calibration",
                    g.label()
                ));
            }
            if let Some(l) = g
                .levels
                .iter()
                .find(|l| !(l.factor.is_finite() && l.factor > 0.0))
            {
                return bad(format!(
                    "{} has factor {} at level {}; factors must be finite and > 0",
                    g.label(),
                    l.factor,
                    l.level
                ));
            }
        }
        Ok(())
    }

    /// The half-width factor at central level `u` for genes in `pathways` pathway tokens
    /// (their group's, or the factors for all genes without groups): linear between fitted
    /// levels, constant beyond the first and last.
    pub fn factor_at(&self, u: f64, pathways: usize) -> f64 {
        factor_at(self.levels_for(pathways), u)
    }

    /// The factors for genes in `pathways` pathway tokens.
    fn levels_for(&self, pathways: usize) -> &[LevelFactor] {
        self.groups
            .iter()
            .find(|g| g.holds(pathways))
            .map_or(&self.levels, |g| &g.levels)
    }

    /// Whether it was fitted for this sampling setting.
    pub fn matches(&self, cfg: f32, steps: usize) -> bool {
        (self.cfg - cfg).abs() <= 1e-4 && self.steps == steps
    }

    /// Stretches every column of `draws` [n, genes] around its median (module docs), gene
    /// j by the factors of its group (`pathway_counts[j]` pathway tokens, the model's
    /// `PathwaySet::pathway_counts`; unused without groups). Order within a column is kept:
    /// where interpolated factors would let a draw pass its outer neighbour, it is held at
    /// the neighbour's value.
    pub fn apply(&self, mut draws: ArrayViewMut2<'_, f32>, pathway_counts: &[usize]) {
        let n = draws.nrows();
        if n < 2 {
            return;
        }
        // The model's own pathways: a mismatch is a bug, not a user's input.
        assert!(
            self.groups.is_empty() || pathway_counts.len() == draws.ncols(),
            "pathway counts for {} genes, draws of {}",
            pathway_counts.len(),
            draws.ncols()
        );
        let table = |levels: &[LevelFactor]| -> Vec<f64> {
            (0..n)
                .map(|i| factor_at(levels, (2.0 * i as f64 / (n - 1) as f64 - 1.0).abs()))
                .collect()
        };
        let all = table(&self.levels);
        let by_group: Vec<Vec<f64>> = self.groups.iter().map(|g| table(&g.levels)).collect();
        let mut order: Vec<usize> = (0..n).collect();
        let mut sorted = vec![0f64; n];
        let mut moved = vec![0f64; n];
        for (j, mut col) in draws.columns_mut().into_iter().enumerate() {
            let factors = if self.groups.is_empty() {
                &all
            } else {
                let k = self.groups.iter().position(|g| g.holds(pathway_counts[j]));
                k.map_or(&all, |k| &by_group[k])
            };
            order.sort_by(|&a, &b| col[a].total_cmp(&col[b]).then(a.cmp(&b)));
            for (s, &i) in sorted.iter_mut().zip(&order) {
                *s = f64::from(col[i]);
            }
            let m = quantile_sorted(&sorted, 0.5);
            for ((mv, &x), &c) in moved.iter_mut().zip(&sorted).zip(factors.iter()) {
                *mv = m + c * (x - m);
            }
            // Keep the order outward from the median on each side.
            let mid = n / 2;
            for r in mid + 1..n {
                moved[r] = moved[r].max(moved[r - 1]);
            }
            for r in (0..mid).rev() {
                moved[r] = moved[r].min(moved[r + 1]);
            }
            for (&i, &v) in order.iter().zip(&moved) {
                col[i] = v as f32;
            }
        }
    }
}

/// Reads a calibration file: a JSON list of calibrations (or a single one), each checked.
pub fn read_file(path: &Path) -> Result<Vec<Calibration>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::invalid(path, format!("not JSON: {e}")))?;
    let list = if v.is_array() {
        v
    } else {
        serde_json::Value::Array(vec![v])
    };
    let cals: Vec<Calibration> = serde_json::from_value(list)
        .map_err(|e| Error::invalid(path, format!("not a calibration: {e}")))?;
    for c in &cals {
        c.validate(path)?;
    }
    Ok(cals)
}

/// Writes `cals` as a JSON list, atomically.
pub fn write_file(path: &Path, cals: &[Calibration]) -> Result<()> {
    let text = serde_json::to_string_pretty(cals).expect("calibrations serialise");
    crate::atomic::write_bytes_atomic(path, text.as_bytes())
}

/// `all` with `new` added, replacing one fitted for the same sampling setting.
pub fn merge(mut all: Vec<Calibration>, new: Calibration) -> Vec<Calibration> {
    all.retain(|c| !c.matches(new.cfg, new.steps));
    all.push(new);
    all.sort_by(|a, b| a.cfg.total_cmp(&b.cfg).then(a.steps.cmp(&b.steps)));
    all
}

/// What a run did about interval calibration (`run.json` field `calibration`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationUse {
    pub applied: bool,
    /// Why not, when not applied (none in the model, none for this setting, or turned off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The calibration applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// A warning about the calibration applied (fitted on another number of draws).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl CalibrationUse {
    /// Picks the calibration of `all` for a run of `draws` draws per slide at (`cfg`,
    /// `steps`) unless `disabled`.
    pub fn choose(
        all: &[Calibration],
        cfg: f32,
        steps: usize,
        draws: usize,
        disabled: bool,
    ) -> Self {
        let not = |reason: String| CalibrationUse {
            applied: false,
            reason: Some(reason),
            calibration: None,
            warning: None,
        };
        if disabled {
            return not("turned off (--no-calibration)".into());
        }
        if all.is_empty() {
            return not("the model has no interval calibration".into());
        }
        match select(all, cfg, steps) {
            Some(c) => CalibrationUse {
                applied: true,
                reason: None,
                calibration: Some(c.clone()),
                warning: c.draws.filter(|&d| d != draws).map(|d| {
                    format!(
                        "the intervals were calibrated on {d} draws per slide and this run makes {draws}, \
                         so they come out {} (fit the calibration on {draws} draws per slide)",
                        if draws < d { "too narrow" } else { "somewhat too wide" }
                    )
                }),
            },
            None => {
                let have: Vec<String> = all
                    .iter()
                    .map(|c| format!("guidance {} with {} time points", c.cfg, c.steps))
                    .collect();
                not(format!(
                    "no calibration for guidance {cfg} with {steps} time points (the model has {})",
                    have.join(", ")
                ))
            }
        }
    }
}

/// A line for `rnafm-run inspect`: the calibrated settings and their factors.
pub fn describe(all: &[Calibration]) -> String {
    if all.is_empty() {
        return "\n  interval calibration: none (raw spread of the draws)".into();
    }
    let parts: Vec<String> = all
        .iter()
        .map(|c| {
            let f: Vec<String> = c
                .levels
                .iter()
                .map(|l| format!("{:.0}% ×{:.2}", l.level * 100.0, l.factor))
                .collect();
            let groups: Vec<String> = c
                .groups
                .iter()
                .map(|g| {
                    let f: Vec<String> = g
                        .levels
                        .iter()
                        .map(|l| format!("×{:.2}", l.factor))
                        .collect();
                    format!("{} {}", g.label(), f.join("/"))
                })
                .collect();
            format!(
                "guidance {} with {} time points ({}; {} slides{}{})",
                c.cfg,
                c.steps,
                f.join(", "),
                c.slides,
                c.draws
                    .map_or(String::new(), |d| format!(", {d} draws each")),
                if groups.is_empty() {
                    String::new()
                } else {
                    format!("; by pathway count: {}", groups.join(", "))
                }
            )
        })
        .collect();
    format!("\n  interval calibration: {}", parts.join("; "))
}

/// The calibration of `all` fitted for (`cfg`, `steps`), if any.
pub fn select(all: &[Calibration], cfg: f32, steps: usize) -> Option<&Calibration> {
    all.iter().find(|c| c.matches(cfg, steps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    fn cal(levels: &[(f64, f64)]) -> Calibration {
        Calibration {
            cfg: 2.0,
            steps: 20,
            levels: levels
                .iter()
                .map(|&(level, factor)| LevelFactor {
                    level,
                    factor,
                    coverage_before: 0.0,
                })
                .collect(),
            slides: 1,
            values: 1,
            fitted_on: None,
            draws: None,
            groups: Vec::new(),
            anchor_loo: false,
        }
    }

    /// Draws from N(mu, sd) while the truth comes from N(mu, k·sd): the fitted factor at
    /// every level must recover k.
    #[test]
    fn fit_recovers_a_known_scale() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (n, s, g) = (200, 40, 50);
        let k = 1.7f64;
        let mut draws = Array3::<f32>::zeros((n, s, g));
        let mut truth = Array2::<f32>::zeros((s, g));
        for i in 0..s {
            for j in 0..g {
                let mu = (i as f64 * 0.3 + j as f64 * 0.1).sin() * 3.0;
                let sd = 0.2 + 0.05 * (j % 7) as f64;
                let d = Normal::new(mu, sd).unwrap();
                for r in 0..n {
                    draws[[r, i, j]] = d.sample(&mut rng) as f32;
                }
                truth[[i, j]] = Normal::new(mu, k * sd).unwrap().sample(&mut rng) as f32;
            }
        }
        let f = fit_levels(draws.view(), truth.view(), &DEFAULT_LEVELS, Path::new("t")).unwrap();
        for lf in &f {
            assert!(
                (lf.factor - k).abs() < 0.12 * k,
                "level {} factor {} (want {k})",
                lf.level,
                lf.factor
            );
            assert!(lf.coverage_before < lf.level - 0.1, "{lf:?}");
        }
        // Already calibrated draws (k = 1) give factors near 1.
        let mut truth1 = Array2::<f32>::zeros((s, g));
        for i in 0..s {
            for j in 0..g {
                let col: Vec<f32> = draws.slice(ndarray::s![.., i, j]).to_vec();
                let mu = col.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
                let sd = 0.2 + 0.05 * (j % 7) as f64;
                truth1[[i, j]] = Normal::new(mu, sd).unwrap().sample(&mut rng) as f32;
            }
        }
        let f1 = fit_levels(draws.view(), truth1.view(), &DEFAULT_LEVELS, Path::new("t")).unwrap();
        assert!(f1.iter().all(|l| (l.factor - 1.0).abs() < 0.15), "{f1:?}");
    }

    #[test]
    fn apply_scales_interval_widths_by_the_factor() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = Normal::new(5.0, 0.4).unwrap();
        let mut x = Array2::<f32>::zeros((101, 3));
        x.mapv_inplace(|_| d.sample(&mut rng) as f32);
        let before = x.clone();
        let c = cal(&[(0.5, 2.5), (0.9, 2.5)]);
        c.apply(x.view_mut(), &[]);
        for j in 0..3 {
            let q = |a: &Array2<f32>, p: f64| {
                let mut v: Vec<f64> = a.column(j).iter().map(|&v| f64::from(v)).collect();
                v.sort_by(f64::total_cmp);
                quantile_sorted(&v, p)
            };
            assert!((q(&x, 0.5) - q(&before, 0.5)).abs() < 1e-5);
            let w0 = q(&before, 0.95) - q(&before, 0.05);
            let w1 = q(&x, 0.95) - q(&x, 0.05);
            assert!((w1 / w0 - 2.5).abs() < 1e-4, "{}", w1 / w0);
        }
        // Each draw keeps its rank.
        for j in 0..3 {
            for a in 0..101 {
                for b in 0..101 {
                    if before[[a, j]] < before[[b, j]] {
                        assert!(x[[a, j]] <= x[[b, j]]);
                    }
                }
            }
        }
    }

    #[test]
    fn factors_interpolate_between_levels() {
        let c = cal(&[(0.5, 2.0), (0.8, 1.4), (0.9, 1.2)]);
        assert_eq!(c.factor_at(0.1, 0), 2.0);
        assert!((c.factor_at(0.65, 0) - 1.7).abs() < 1e-12);
        assert!((c.factor_at(0.85, 0) - 1.3).abs() < 1e-12);
        assert_eq!(c.factor_at(0.99, 0), 1.2);
        assert!(c.validate(Path::new("m")).is_ok());
        assert!(
            cal(&[(0.9, 1.0), (0.5, 1.0)])
                .validate(Path::new("m"))
                .is_err()
        );
        assert!(cal(&[(0.5, 0.0)]).validate(Path::new("m")).is_err());
        assert!(select(std::slice::from_ref(&c), 2.0, 20).is_some());
        assert!(select(std::slice::from_ref(&c), 3.0, 20).is_none());
    }

    #[test]
    fn small_groups_join_their_neighbour() {
        // 100 background genes, 3 in one pathway, 60 in two or three, 200 in 4–10, none in 11+
        let mut counts = vec![0usize; 100];
        counts.extend([1, 1, 1]);
        counts.extend(std::iter::repeat_n(2, 30).chain(std::iter::repeat_n(3, 30)));
        counts.extend(std::iter::repeat_n(7, 200));
        assert_eq!(
            group_ranges(&counts),
            vec![(0, Some(0)), (1, Some(3)), (4, None)]
        );
        // every default group large enough: the edges as they are
        let all: Vec<usize> = [0, 1, 2, 5, 20]
            .iter()
            .flat_map(|&n| std::iter::repeat_n(n, MIN_GROUP_GENES))
            .collect();
        assert_eq!(
            group_ranges(&all),
            vec![
                (0, Some(0)),
                (1, Some(1)),
                (2, Some(3)),
                (4, Some(10)),
                (11, None)
            ]
        );
        // too few genes for two groups: one
        assert_eq!(group_ranges(&[0, 3, 12]), vec![(0, None)]);
    }

    /// Genes in no pathway are drawn as wide as their truth varies, genes in five pathways
    /// half as wide: one factor for all lands between, the groups recover 1 and 2, and
    /// applying them stretches each gene by its own group's factor.
    #[test]
    fn groups_recover_each_groups_scale_and_apply_per_gene() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, s, g) = (200, 40, 120);
        let counts: Vec<usize> = (0..g).map(|j| if j < 60 { 0 } else { 5 }).collect();
        let mut draws = Array3::<f32>::zeros((n, s, g));
        let mut truth = Array2::<f32>::zeros((s, g));
        for i in 0..s {
            for j in 0..g {
                let mu = (i as f64 * 0.7 + j as f64 * 0.2).cos() * 2.0;
                let d = Normal::new(mu, 0.3).unwrap();
                for r in 0..n {
                    draws[[r, i, j]] = d.sample(&mut rng) as f32;
                }
                let k = if counts[j] == 0 { 1.0 } else { 2.0 };
                truth[[i, j]] = Normal::new(mu, 0.3 * k).unwrap().sample(&mut rng) as f32;
            }
        }
        let origin = Path::new("t");
        let (all, groups) =
            fit_grouped(draws.view(), truth.view(), &DEFAULT_LEVELS, &counts, origin).unwrap();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(
            (groups[0].min_pathways, groups[0].max_pathways),
            (0, Some(0))
        );
        assert_eq!((groups[1].min_pathways, groups[1].max_pathways), (1, None));
        assert_eq!((groups[0].genes, groups[1].genes), (60, 60));
        assert_eq!(groups[0].values + groups[1].values, s * g);
        for (a, (g0, g1)) in all
            .iter()
            .zip(groups[0].levels.iter().zip(&groups[1].levels))
        {
            assert!((g0.factor - 1.0).abs() < 0.15, "{g0:?}");
            assert!((g1.factor - 2.0).abs() < 0.3, "{g1:?}");
            assert!(
                a.factor > g0.factor + 0.2 && a.factor < g1.factor - 0.2,
                "{a:?}"
            );
        }
        let c = Calibration {
            groups,
            ..cal(&[(0.5, 1.0), (0.8, 1.0), (0.9, 1.0)])
        };
        let c = Calibration { levels: all, ..c };
        assert!(c.validate(origin).is_ok());
        assert_eq!(c.factor_at(0.9, 0), c.groups[0].levels[2].factor);
        assert_eq!(c.factor_at(0.9, 17), c.groups[1].levels[2].factor);
        // one slide's draws: each column keeps its median and scales by its group's factor
        let before = draws.slice(ndarray::s![.., 0, ..]).to_owned();
        let mut after = before.clone();
        c.apply(after.view_mut(), &counts);
        let width = |a: &Array2<f32>, j: usize| {
            let mut v: Vec<f64> = a.column(j).iter().map(|&v| f64::from(v)).collect();
            v.sort_by(f64::total_cmp);
            quantile_sorted(&v, 0.95) - quantile_sorted(&v, 0.05)
        };
        for (j, &k) in counts.iter().enumerate() {
            let want = c.factor_at(0.9, k);
            let got = width(&after, j) / width(&before, j);
            assert!((got - want).abs() < 1e-3, "gene {j}: ×{got}, want ×{want}");
        }
        // written and read back as JSON
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        write_file(&f, std::slice::from_ref(&c)).unwrap();
        assert_eq!(read_file(&f).unwrap(), vec![c.clone()]);
        assert!(describe(std::slice::from_ref(&c)).contains("background genes ×"));
        // groups with a gap, levels of their own or no open end are refused
        let mut gap = c.clone();
        gap.groups[1].min_pathways = 2;
        let e = gap.validate(origin).unwrap_err().to_string();
        assert!(e.contains("must start where the one before ends"), "{e}");
        let mut lv = c.clone();
        lv.groups[0].levels.pop();
        assert!(lv.validate(origin).is_err());
        let mut closed = c.clone();
        closed.groups[1].max_pathways = Some(40);
        assert!(closed.validate(origin).is_err());
        // a calibration written before groups reads as one set for all genes
        let old = r#"{"cfg": 1.0, "steps": 20, "slides": 2, "values": 4,
            "levels": [{"level": 0.9, "factor": 1.2, "coverage_before": 0.8}]}"#;
        std::fs::write(&f, old).unwrap();
        let back = read_file(&f).unwrap();
        assert!(back[0].groups.is_empty());
        assert_eq!(back[0].factor_at(0.9, 30), 1.2);
    }
}
