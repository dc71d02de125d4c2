//! The ridge baseline: per-gene ridge regression of log2 expression on order-invariant
//! summaries of a slide's cluster features (per feature: mean, sd and max over the K rows).
//! It is what a careful analyst would try first, so RNA-FM has to beat it.
//!
//! With n training slides far fewer than the 3·D summaries, the fit works in the n×n kernel
//! form: one eigendecomposition of K = X·Xᵀ gives, for every penalty λ, the leave-one-out
//! residuals in closed form (e_i / (1 − H_ii)), so each gene gets its own λ by exact LOO
//! cross-validation on the training slides at the cost of a few n×n×G products.

use std::path::{Path, PathBuf};

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array1, Array2, Axis};
use rnafm_runtime::{
    Error, Result, features, genes::GeneList, reference_csv::ReferenceCohort,
    slide_names::feature_file,
};

/// Penalties tried, as multiples of the mean eigenvalue of K: 10^-3 … 10^3 in half decades.
const LAMBDA_DECADES: std::ops::RangeInclusive<i32> = -6..=6;

/// Options of `rnafm-eval ridge`.
#[derive(Debug, Clone)]
pub struct RidgeOptions {
    /// Reference CSV of the training slides.
    pub train: PathBuf,
    /// Folder of per-slide cluster features (`<slide>.npy` / `.npz`).
    pub features: PathBuf,
    /// The genes to predict, in order.
    pub genes: PathBuf,
    /// Slides to predict (one name a line); their features are in `features`.
    pub slides: PathBuf,
    /// Predictions [slides, genes] of log2(FPKM-UQ+1), in the order of `slides`.
    pub out: PathBuf,
    /// Only the per-feature mean over clusters (what an anchored RNA-FM's anchor uses),
    /// not mean, sd and max.
    pub means_only: bool,
}

/// What `run_ridge` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RidgeSummary {
    pub training_slides: usize,
    pub summary_features: usize,
    pub predicted_slides: usize,
    pub genes: usize,
    /// Median over genes of the chosen λ, relative to the mean eigenvalue of K.
    pub median_relative_lambda: f64,
}

/// Per feature column: mean, sd and max over the rows (the cluster order carries nothing).
pub fn summarize(f: &Array2<f32>) -> Vec<f64> {
    let (k, d) = f.dim();
    let mut out = Vec::with_capacity(3 * d);
    let cols: Vec<_> = f.axis_iter(Axis(1)).collect();
    let mean: Vec<f64> = cols
        .iter()
        .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / k as f64)
        .collect();
    out.extend(&mean);
    out.extend(cols.iter().zip(&mean).map(|(c, m)| {
        (c.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / k as f64).sqrt()
    }));
    out.extend(cols.iter().map(|c| {
        c.iter()
            .map(|&v| f64::from(v))
            .fold(f64::NEG_INFINITY, f64::max)
    }));
    out
}

/// A fitted ridge: standardisation of the summaries, the training summaries (kernel form),
/// per-gene dual coefficients and intercepts.
pub struct Ridge {
    x_mean: Array1<f64>,
    x_sd: Array1<f64>,
    x_train: Array2<f64>,
    y_mean: Array1<f64>,
    alpha: Array2<f64>,
    /// Per gene: the chosen λ relative to the mean eigenvalue.
    pub relative_lambda: Vec<f64>,
}

fn standardize(x: &Array2<f64>, mean: &Array1<f64>, sd: &Array1<f64>) -> Array2<f64> {
    (x - &mean.view().insert_axis(Axis(0))) / sd.view().insert_axis(Axis(0))
}

impl Ridge {
    /// Fits `y` [n, G] on `x` [n, p], choosing each gene's λ by exact leave-one-out error.
    pub fn fit(x: &Array2<f64>, y: &Array2<f64>) -> Ridge {
        Self::fit_with_loo(x, y).0
    }

    /// [`Ridge::fit`], also returning each training row's leave-one-out residual [n, G] at
    /// its gene's chosen λ: y_i minus the prediction of the ridge fitted without row i (an
    /// honest out-of-sample residual, what a model trained on the residuals should learn).
    pub fn fit_with_loo(x: &Array2<f64>, y: &Array2<f64>) -> (Ridge, Array2<f64>) {
        let n = x.nrows();
        let x_mean = x.mean_axis(Axis(0)).expect("n ≥ 1");
        let x_sd = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-12 { s } else { 1.0 });
        let xs = standardize(x, &x_mean, &x_sd);
        let y_mean = y.mean_axis(Axis(0)).expect("n ≥ 1");
        let yc = y - &y_mean.view().insert_axis(Axis(0));
        let k = xs.dot(&xs.t());
        let eig = SymmetricEigen::new(DMatrix::from_fn(n, n, |i, j| k[[i, j]]));
        let e: Vec<f64> = eig.eigenvalues.iter().map(|&v| v.max(0.0)).collect();
        let u = Array2::from_shape_fn((n, n), |(i, j)| eig.eigenvectors[(i, j)]);
        let q = u.t().dot(&yc); // [n, G]
        let scale = e.iter().sum::<f64>() / n as f64;
        let genes = y.ncols();
        let mut best = vec![(f64::INFINITY, 0.0f64); genes];
        let mut loo_resid = Array2::<f64>::zeros((n, genes));
        // From the largest penalty down, keeping the first of equal errors: where the data
        // cannot tell (pure noise, K ≈ c·I), the gene stays near its mean.
        for dec in LAMBDA_DECADES.rev() {
            let rel = 10f64.powf(dec as f64 / 2.0);
            let lambda = rel * scale.max(1e-12);
            let shrink: Vec<f64> = e.iter().map(|&ev| ev / (ev + lambda)).collect();
            let h_diag: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|c| u[[i, c]].powi(2) * shrink[c]).sum())
                .collect();
            let mut sq = q.clone();
            for (mut row, s) in sq.axis_iter_mut(Axis(0)).zip(&shrink) {
                row *= *s;
            }
            let fitted = u.dot(&sq);
            let resid =
                |i: usize, g: usize| (yc[[i, g]] - fitted[[i, g]]) / (1.0 - h_diag[i]).max(1e-9);
            for (g, b) in best.iter_mut().enumerate() {
                let loo: f64 = (0..n).map(|i| resid(i, g).powi(2)).sum();
                if loo < b.0 {
                    *b = (loo, rel);
                    for i in 0..n {
                        loo_resid[[i, g]] = resid(i, g);
                    }
                }
            }
        }
        // α_g = U·diag(1/(e + λ_g))·Uᵀ·y_g
        let mut scaled = Array2::zeros((n, genes));
        for (g, &(_, rel)) in best.iter().enumerate() {
            let lambda = rel * scale.max(1e-12);
            for c in 0..n {
                scaled[[c, g]] = q[[c, g]] / (e[c] + lambda);
            }
        }
        let ridge = Ridge {
            x_mean,
            x_sd,
            x_train: xs,
            y_mean,
            alpha: u.dot(&scaled),
            relative_lambda: best.iter().map(|b| b.1).collect(),
        };
        (ridge, loo_resid)
    }

    /// The fit in primal form: (center [p], weight [p, G], bias [G]) with
    /// `predict(x) = (x − center) · weight + bias`.
    pub fn primal(&self) -> (Array1<f64>, Array2<f64>, Array1<f64>) {
        let w = self.x_train.t().dot(&self.alpha) / self.x_sd.view().insert_axis(Axis(1));
        (self.x_mean.clone(), w, self.y_mean.clone())
    }

    /// Predictions [m, G] for summaries `x` [m, p].
    pub fn predict(&self, x: &Array2<f64>) -> Array2<f64> {
        let xs = standardize(x, &self.x_mean, &self.x_sd);
        xs.dot(&self.x_train.t()).dot(&self.alpha) + self.y_mean.view().insert_axis(Axis(0))
    }
}

fn summaries_of(dir: &Path, slides: &[String], means_only: bool) -> Result<Array2<f64>> {
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(slides.len());
    for s in slides {
        let path = feature_file(dir, s).ok_or_else(|| {
            Error::invalid(
                dir,
                format!("no feature file for slide {s:?} (looked for {s}.npy/.npz)"),
            )
        })?;
        let f = features::read_features(&path)?;
        let mut v = summarize(&f);
        if means_only {
            v.truncate(f.ncols());
        }
        if let Some(first) = rows.first()
            && first.len() != v.len()
        {
            return Err(Error::invalid(
                &path,
                format!(
                    "{} feature columns, the first slide has {}",
                    f.ncols(),
                    first.len() / if means_only { 1 } else { 3 }
                ),
            ));
        }
        rows.push(v);
    }
    let p = rows.first().map_or(0, Vec::len);
    Ok(Array2::from_shape_fn((rows.len(), p), |(i, j)| rows[i][j]))
}

/// `rnafm-eval ridge`: fits on every slide of `train`, predicts `slides`, writes `out`.
pub fn run_ridge(a: &RidgeOptions) -> Result<RidgeSummary> {
    let genes = GeneList::read(&a.genes)?;
    let cohort = ReferenceCohort::read(&a.train)?;
    if cohort.len() < 3 {
        return Err(Error::invalid(&a.train, "needs at least 3 training slides"));
    }
    let y = cohort.aligned(&genes)?.mapv(f64::from);
    let x = summaries_of(&a.features, &cohort.slides, a.means_only)?;
    let text = std::fs::read_to_string(&a.slides).map_err(|e| Error::io(&a.slides, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(Error::invalid(&a.slides, "lists no slides"));
    }
    let xn = summaries_of(&a.features, &names, a.means_only)?;
    let per = if a.means_only { 1 } else { 3 };
    if xn.ncols() != x.ncols() {
        return Err(Error::invalid(
            &a.slides,
            format!(
                "its slides have {} feature columns, the training slides {}",
                xn.ncols() / per,
                x.ncols() / per
            ),
        ));
    }
    let model = Ridge::fit(&x, &y);
    let pred = model.predict(&xn).mapv(|v| v as f32);
    rnafm_runtime::npy::write_npy(&a.out, &pred)?;
    let mut lam = model.relative_lambda.clone();
    lam.sort_by(f64::total_cmp);
    Ok(RidgeSummary {
        training_slides: cohort.len(),
        summary_features: x.ncols(),
        predicted_slides: names.len(),
        genes: genes.len(),
        median_relative_lambda: lam[lam.len() / 2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn randn(rng: &mut ChaCha8Rng, r: usize, c: usize) -> Array2<f64> {
        Array2::from_shape_simple_fn((r, c), || StandardNormal.sample(rng))
    }

    #[test]
    fn summaries_ignore_row_order() {
        let f = Array2::from_shape_vec((3, 2), vec![1.0f32, 5.0, 3.0, 4.0, 2.0, 6.0]).unwrap();
        let g = Array2::from_shape_vec((3, 2), vec![2.0f32, 6.0, 1.0, 5.0, 3.0, 4.0]).unwrap();
        assert_eq!(summarize(&f), summarize(&g));
        let s = summarize(&f);
        assert_eq!(s.len(), 6);
        assert!((s[0] - 2.0).abs() < 1e-12 && (s[1] - 5.0).abs() < 1e-12); // means
        assert!((s[4] - 3.0).abs() < 1e-12 && (s[5] - 6.0).abs() < 1e-12); // maxima
    }

    /// A gene that follows the features gets a small λ and good predictions; a gene of pure
    /// noise gets the largest λ (predicting about its mean).
    #[test]
    fn loo_picks_the_penalty_per_gene() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (n, p) = (60, 20);
        let x = randn(&mut rng, n + 40, p);
        let w = randn(&mut rng, p, 1);
        let noise = randn(&mut rng, n + 40, 1);
        let signal = x.dot(&w);
        let mut y = Array2::zeros((n + 40, 2));
        y.column_mut(0)
            .assign(&(&signal.column(0) + &(0.1 * &noise.column(0))));
        y.column_mut(1).assign(&noise.column(0));
        let (xt, yt) = (
            x.slice(ndarray::s![..n, ..]).to_owned(),
            y.slice(ndarray::s![..n, ..]).to_owned(),
        );
        let model = Ridge::fit(&xt, &yt);
        assert!(
            model.relative_lambda[0] < model.relative_lambda[1],
            "{:?}",
            model.relative_lambda
        );
        assert!(
            model.relative_lambda[1] >= 1.0,
            "{:?}",
            model.relative_lambda
        );
        let pred = model.predict(&x.slice(ndarray::s![n.., ..]).to_owned());
        let truth = y.slice(ndarray::s![n.., ..]);
        let r = crate::stats::pearson(&pred.column(0).to_vec(), &truth.column(0).to_vec());
        assert!(r > 0.9, "r {r}");
    }

    /// The leave-one-out residuals are those of refitting without the row (at the chosen λ,
    /// which the refit does not re-choose: a fixed-λ identity), and the primal form predicts
    /// as the kernel form does.
    #[test]
    fn loo_residuals_and_primal_form_agree_with_refits() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (n, p) = (30, 8);
        let x = randn(&mut rng, n, p);
        let y = x.dot(&randn(&mut rng, p, 3)) + randn(&mut rng, n, 3);
        let (model, loo) = Ridge::fit_with_loo(&x, &y);
        let (center, w, bias) = model.primal();
        let xn = randn(&mut rng, 5, p);
        let primal = (&xn - &center.view().insert_axis(Axis(0))).dot(&w) + &bias;
        let diff = (&primal - &model.predict(&xn)).mapv(f64::abs);
        assert!(diff.iter().all(|&d| d < 1e-9), "{diff:?}");
        // Row 0 left out, with gene g's λ and the standardisation of all rows (as the
        // closed form has it): a direct solve of the ridge on the other rows.
        let xs = standardize(&x, &model.x_mean, &model.x_sd);
        let k = xs.dot(&xs.t());
        let scale = k.diag().sum() / n as f64;
        for g in 0..3 {
            let lambda = model.relative_lambda[g] * scale;
            let rows: Vec<usize> = (1..n).collect();
            let xr = xs.select(Axis(0), &rows);
            // The closed form centres y once, on all rows.
            let yall = y.column(g).mean().unwrap();
            let ycall = y.column(g).select(Axis(0), &rows) - yall;
            let kr = xr.dot(&xr.t()) + Array2::<f64>::eye(n - 1) * lambda;
            let a = DMatrix::from_fn(n - 1, n - 1, |i, j| kr[[i, j]])
                .lu()
                .solve(&nalgebra::DVector::from_iterator(
                    n - 1,
                    ycall.iter().copied(),
                ))
                .unwrap();
            let pred0: f64 = (0..n - 1).map(|i| xs.row(0).dot(&xr.row(i)) * a[i]).sum();
            let want = (y[[0, g]] - yall) - pred0;
            assert!(
                (loo[[0, g]] - want).abs() < 1e-8,
                "gene {g}: {} vs {want}",
                loo[[0, g]]
            );
        }
    }
}
