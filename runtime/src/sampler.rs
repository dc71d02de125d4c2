//! The guided flow sampler: integrates the learned velocity field from Gaussian noise (t=0)
//! to expression (t=1) with Euler steps, on the five exported ONNX graphs.
//!
//! Per slide the condition graph runs once, and the modulation graph runs once for every
//! time point of the grid and both guidance branches (the adaLN modulations depend on
//! (t, slide) only); per step the embedding graph runs once on the current samples and its
//! tokens feed both guidance branches in one backbone/heads call of twice the batch, which
//! read their rows of the precomputed modulations.
//!
//! ONNX Runtime's CPU GEMM takes another kernel for a single-row product, which changes the
//! last bits of the result. So that a sample's numbers do not depend on how samples are
//! batched, no graph is ever run on one row: a lone row is run beside a copy of itself
//! ([`MIN_ROWS`]). With guidance the backbone and heads always get two rows or more.

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, Axis, Ix2, Ix3, concatenate, s};
use ort::session::Session;
use ort::value::TensorRef;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};

/// The five graphs of a bundle plus the null condition's slide embedding.
pub struct FlowGraphs {
    pub condition: Session,
    pub modulation: Session,
    pub embed: Session,
    pub backbone: Session,
    pub heads: Session,
    /// Slide embedding of the null condition, [H].
    pub null_slide_emb: Array1<f32>,
    /// Saved graphs that sessions above use in place; declared last so that it is dropped
    /// after them ([`crate::graph_cache`]).
    pub mapped: crate::graph_cache::Mapped,
}

/// What to sample.
#[derive(Debug, Clone, Copy)]
pub struct SampleParams {
    pub samples: usize,
    /// Time points of the Euler grid linspace(0,1,T); T−1 steps.
    pub steps: usize,
    /// Guidance scale s: v = v_uncond + s·(v_cond − v_uncond); 1 = conditional only.
    pub cfg: f32,
    pub seed: u64,
    /// Samples integrated together (bounds memory).
    pub batch: usize,
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams {
            samples: 100,
            steps: 20,
            cfg: 2.0,
            seed: 0,
            batch: 10,
        }
    }
}

/// adaLN modulations from modulation.onnx for a list of time points: row 2i is time point i
/// with the slide's embedding, row 2i+1 the same time with the null embedding.
pub struct Modulations {
    /// DiT blocks, [R, depth, 6H].
    pub block: Array3<f32>,
    /// Pathway heads, [R, P, 2H].
    pub head: Array3<f32>,
    /// Background head, [R, 2H].
    pub bg: Array2<f32>,
}

/// The modulation rows of a backbone/heads call at time point `i` for states whose row r
/// belongs to input `owners[r]` (an index into `mods`): those rows with each input's
/// conditional modulations, then (when `guided`) the same rows with the null condition's.
fn gather_rows(
    mods: &[&Modulations],
    owners: &[usize],
    i: usize,
    guided: bool,
) -> (Array3<f32>, Array3<f32>, Array2<f32>) {
    let b = owners.len();
    let pick = |r: usize| {
        let m = mods[owners[r % b]];
        (m, if guided && r >= b { 2 * i + 1 } else { 2 * i })
    };
    let n = if guided { 2 * b } else { b };
    let stack3 = |get: &dyn Fn(&Modulations) -> &Array3<f32>| {
        let (_, d1, d2) = get(mods[0]).dim();
        let mut out = Array3::<f32>::zeros((n, d1, d2));
        for (r, mut row) in out.outer_iter_mut().enumerate() {
            let (m, k) = pick(r);
            row.assign(&get(m).index_axis(Axis(0), k));
        }
        out
    };
    let mut bg = Array2::<f32>::zeros((n, mods[0].bg.ncols()));
    for (r, mut row) in bg.rows_mut().into_iter().enumerate() {
        let (m, k) = pick(r);
        row.assign(&m.bg.row(k));
    }
    (stack3(&|m| &m.block), stack3(&|m| &m.head), bg)
}

/// Fewest rows a graph is run on (see the module comment).
pub const MIN_ROWS: usize = 2;

/// `a` with its first row repeated until it has [`MIN_ROWS`] rows (a view when it has them),
/// in standard layout.
fn at_least_min_rows<'a, D: ndarray::RemoveAxis + 'a>(
    a: ndarray::ArrayView<'a, f32, D>,
) -> ndarray::CowArray<'a, f32, D> {
    let n = a.len_of(Axis(0));
    if (n >= MIN_ROWS || n == 0) && a.is_standard_layout() {
        return a.into();
    }
    if n >= MIN_ROWS || n == 0 {
        return a.as_standard_layout().into_owned().into();
    }
    let mut shape = a.raw_dim();
    shape[0] = MIN_ROWS;
    let mut out = ndarray::Array::<f32, D>::zeros(shape);
    for mut row in out.axis_iter_mut(Axis(0)) {
        row.assign(&a.index_axis(Axis(0), 0));
    }
    out.into()
}

fn ort_err(graph: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{graph}: {e}"))
}

fn output2(
    outputs: &ort::session::SessionOutputs<'_>,
    graph: &str,
    name: &str,
) -> Result<Array2<f32>> {
    let v = outputs
        .get(name)
        .ok_or_else(|| Error::Runtime(format!("{graph}: no output `{name}`")))?;
    let a = v.try_extract_array::<f32>().map_err(ort_err(graph))?;
    a.into_dimensionality::<Ix2>()
        .map(|a| a.to_owned())
        .map_err(|e| Error::Runtime(format!("{graph}: output `{name}`: {e}")))
}

fn output3(
    outputs: &ort::session::SessionOutputs<'_>,
    graph: &str,
    name: &str,
) -> Result<ndarray::Array3<f32>> {
    let v = outputs
        .get(name)
        .ok_or_else(|| Error::Runtime(format!("{graph}: no output `{name}`")))?;
    let a = v.try_extract_array::<f32>().map_err(ort_err(graph))?;
    a.into_dimensionality::<Ix3>()
        .map(|a| a.to_owned())
        .map_err(|e| Error::Runtime(format!("{graph}: output `{name}`: {e}")))
}

/// Gaussian noise for samples `first..first+count`: sample j's noise comes from a ChaCha8
/// stream keyed by (seed, j), so it does not depend on how samples are batched.
pub fn noise(seed: u64, first: usize, count: usize, genes: usize) -> Array2<f32> {
    let mut z = Array2::<f32>::zeros((count, genes));
    for (i, mut row) in z.axis_iter_mut(Axis(0)).enumerate() {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&((first + i) as u64).to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        for v in row.iter_mut() {
            *v = StandardNormal.sample(&mut rng);
        }
    }
    z
}

/// The Euler grid `linspace(0, 1, T)` in float32, computed as torch does (the official
/// sampler's grid): the first half as `step·i`, the second as `1 − step·(T−1−i)`, so both ends
/// are exact. The one definition: the burn sampler and the ONNX sampler share it.
pub fn time_grid(points: usize) -> Vec<f32> {
    if points < 2 {
        return vec![0.0; points];
    }
    let step = 1.0f32 / (points - 1) as f32;
    let half = points / 2;
    (0..points)
        .map(|i| {
            if i < half {
                step * i as f32
            } else {
                1.0 - step * (points - 1 - i) as f32
            }
        })
        .collect()
}

impl FlowGraphs {
    /// Token width H (the null embedding's length).
    pub fn hidden(&self) -> usize {
        self.null_slide_emb.len()
    }

    /// The slide embedding [H] of cluster features [K,D].
    pub fn slide_embedding(&mut self, features: ArrayView2<'_, f32>) -> Result<Array1<f32>> {
        let x = features
            .insert_axis(Axis(0))
            .as_standard_layout()
            .to_owned();
        let emb = {
            let input = TensorRef::from_array_view(&x).map_err(ort_err("condition.onnx"))?;
            let out = self
                .condition
                .run(ort::inputs!["features" => input])
                .map_err(ort_err("condition.onnx"))?;
            output2(&out, "condition.onnx", "slide_emb")?
        };
        if emb.dim() != (1, self.hidden()) {
            return Err(Error::Runtime(format!(
                "condition.onnx: slide_emb is {:?}, expected [1, {}]",
                emb.shape(),
                self.hidden()
            )));
        }
        Ok(emb.row(0).to_owned())
    }

    /// Pathway tokens [B,P,H] and background token [B,1,H] of states `x` [B,G].
    fn embed(&mut self, x: ArrayView2<'_, f32>) -> Result<(Array3<f32>, Array3<f32>)> {
        let b = x.nrows();
        let x = at_least_min_rows(x);
        let input = TensorRef::from_array_view(&x).map_err(ort_err("embed.onnx"))?;
        let out = self
            .embed
            .run(ort::inputs!["x" => input])
            .map_err(ort_err("embed.onnx"))?;
        let keep = |a: Array3<f32>| {
            if a.dim().0 == b {
                a
            } else {
                a.slice(s![..b, .., ..]).to_owned()
            }
        };
        Ok((
            keep(output3(&out, "embed.onnx", "tokens")?),
            keep(output3(&out, "embed.onnx", "bg_token")?),
        ))
    }

    /// adaLN modulations for time points `times` with the slide's embedding and with the null
    /// embedding ([`Modulations`]), in one modulation.onnx call of 2·len rows.
    pub fn modulations(&mut self, times: &[f32], slide_emb: &Array1<f32>) -> Result<Modulations> {
        let n = 2 * times.len();
        let h = self.hidden();
        let mut emb = Array2::<f32>::zeros((n, h));
        let mut tt = Array1::<f32>::zeros(n);
        for (i, &t) in times.iter().enumerate() {
            emb.row_mut(2 * i).assign(slide_emb);
            emb.row_mut(2 * i + 1).assign(&self.null_slide_emb);
            tt[2 * i] = t;
            tt[2 * i + 1] = t;
        }
        let (emb, tt) = (at_least_min_rows(emb.view()), at_least_min_rows(tt.view()));
        let name = "modulation.onnx";
        let out = self
            .modulation
            .run(ort::inputs![
                "t" => TensorRef::from_array_view(&tt).map_err(ort_err(name))?,
                "slide_emb" => TensorRef::from_array_view(&emb).map_err(ort_err(name))?,
            ])
            .map_err(ort_err(name))?;
        let m = Modulations {
            block: output3(&out, name, "block_mod")?,
            head: output3(&out, name, "head_mod")?,
            bg: output2(&out, name, "bg_mod")?,
        };
        let rows = emb.nrows();
        if m.block.dim().0 != rows || m.head.dim().0 != rows || m.bg.nrows() != rows {
            return Err(Error::Runtime(format!(
                "{name}: outputs have {}, {} and {} rows, expected {rows}",
                m.block.dim().0,
                m.head.dim().0,
                m.bg.nrows()
            )));
        }
        Ok(m)
    }

    /// Velocity [R,G] of R rows: tokens [R,P,H], background tokens [R,1,H] and their
    /// modulation rows.
    fn branch_velocity(
        &mut self,
        tokens: ArrayView3<'_, f32>,
        bg: ArrayView3<'_, f32>,
        mods: (Array3<f32>, Array3<f32>, Array2<f32>),
    ) -> Result<Array2<f32>> {
        let rows = tokens.dim().0;
        let (tokens, bg) = (at_least_min_rows(tokens), at_least_min_rows(bg));
        let (block, head, bg_mod) = (
            at_least_min_rows(mods.0.view()),
            at_least_min_rows(mods.1.view()),
            at_least_min_rows(mods.2.view()),
        );
        let tokens_out = {
            let out = self
                .backbone
                .run(ort::inputs![
                    "tokens" => TensorRef::from_array_view(&tokens).map_err(ort_err("backbone.onnx"))?,
                    "block_mod" => TensorRef::from_array_view(&block).map_err(ort_err("backbone.onnx"))?,
                ])
                .map_err(ort_err("backbone.onnx"))?;
            output3(&out, "backbone.onnx", "tokens_out")?
        };
        let v = {
            let out = self
                .heads
                .run(ort::inputs![
                    "tokens_out" => TensorRef::from_array_view(&tokens_out).map_err(ort_err("heads.onnx"))?,
                    "bg_token" => TensorRef::from_array_view(&bg).map_err(ort_err("heads.onnx"))?,
                    "head_mod" => TensorRef::from_array_view(&head).map_err(ort_err("heads.onnx"))?,
                    "bg_mod" => TensorRef::from_array_view(&bg_mod).map_err(ort_err("heads.onnx"))?,
                ])
                .map_err(ort_err("heads.onnx"))?;
            output2(&out, "heads.onnx", "v")?
        };
        if v.nrows() != tokens.dim().0 {
            return Err(Error::Runtime(format!(
                "heads.onnx: v has {} rows, expected {}",
                v.nrows(),
                tokens.dim().0
            )));
        }
        Ok(if v.nrows() == rows {
            v
        } else {
            v.slice(s![..rows, ..]).to_owned()
        })
    }

    /// Guided velocity for states `x` [B,G] at time `t`.
    pub fn velocity(
        &mut self,
        x: ArrayView2<'_, f32>,
        t: f32,
        slide_emb: &Array1<f32>,
        cfg: f32,
    ) -> Result<Array2<f32>> {
        let mods = self.modulations(&[t], slide_emb)?;
        self.velocity_at(x, &mods, 0, cfg)
    }

    /// Guided velocity for states `x` [B,G] at time point `i` of `mods`.
    pub fn velocity_at(
        &mut self,
        x: ArrayView2<'_, f32>,
        mods: &Modulations,
        i: usize,
        cfg: f32,
    ) -> Result<Array2<f32>> {
        self.velocity_rows(x, &[mods], &vec![0; x.nrows()], i, cfg)
    }

    /// Guided velocity for states `x` [B,G] at time point `i`, row r conditioned on input
    /// `owners[r]` of `mods`. Rows do not interact: a row's velocity is the same whichever
    /// rows (of whichever inputs) share the call.
    fn velocity_rows(
        &mut self,
        x: ArrayView2<'_, f32>,
        mods: &[&Modulations],
        owners: &[usize],
        i: usize,
        cfg: f32,
    ) -> Result<Array2<f32>> {
        let b = x.nrows();
        let (tokens, bg) = self.embed(x)?;
        // cfg = 1 is the conditional velocity alone; skip the null branch.
        let guided = cfg != 1.0;
        let rows = if guided { 2 * b } else { b };
        let m = gather_rows(mods, owners, i, guided);
        let v = if guided {
            let cat = |a: &Array3<f32>| {
                concatenate(Axis(0), &[a.view(), a.view()])
                    .map_err(|e| Error::Runtime(format!("embed.onnx: {e}")))
            };
            self.branch_velocity(cat(&tokens)?.view(), cat(&bg)?.view(), m)?
        } else {
            self.branch_velocity(tokens.view(), bg.view(), m)?
        };
        if v.ncols() != x.ncols() {
            return Err(Error::Runtime(format!(
                "heads.onnx: v is {:?}, expected [{rows}, {}]",
                v.shape(),
                x.ncols()
            )));
        }
        if !guided {
            return Ok(v);
        }
        let vc = v.slice(s![..b, ..]);
        let vu = v.slice(s![b.., ..]);
        Ok(&vu + &((&vc - &vu) * cfg))
    }

    /// Euler integration of `z` [B,G] over linspace(0,1,steps); `tick` is called after each step.
    pub fn integrate(
        &mut self,
        state: Array2<f32>,
        slide_emb: &Array1<f32>,
        steps: usize,
        cfg: f32,
        tick: &mut dyn FnMut(),
    ) -> Result<Array2<f32>> {
        let grid = time_grid(steps);
        if grid.len() < 2 {
            return Ok(state);
        }
        let mods = self.grid_modulations(&grid, slide_emb)?;
        self.integrate_with(state, &mods, &grid, cfg, tick)
    }

    /// Modulations for the Euler steps of `grid` (every time point but the last).
    fn grid_modulations(&mut self, grid: &[f32], slide_emb: &Array1<f32>) -> Result<Modulations> {
        self.modulations(&grid[..grid.len().saturating_sub(1)], slide_emb)
    }

    /// Euler integration over `grid` with its step modulations `mods`.
    fn integrate_with(
        &mut self,
        state: Array2<f32>,
        mods: &Modulations,
        grid: &[f32],
        cfg: f32,
        tick: &mut dyn FnMut(),
    ) -> Result<Array2<f32>> {
        let owners = vec![0; state.nrows()];
        self.integrate_rows(state, &[mods], &owners, grid, cfg, tick)
    }

    /// Euler integration over `grid`, row r with the step modulations of `mods[owners[r]]`.
    fn integrate_rows(
        &mut self,
        mut state: Array2<f32>,
        mods: &[&Modulations],
        owners: &[usize],
        grid: &[f32],
        cfg: f32,
        tick: &mut dyn FnMut(),
    ) -> Result<Array2<f32>> {
        for (i, w) in grid.windows(2).enumerate() {
            let v = self.velocity_rows(state.view(), mods, owners, i, cfg)?;
            state.scaled_add(w[1] - w[0], &v);
            tick();
        }
        Ok(state)
    }

    /// `params.samples` z-space samples [n,G] for one slide's cluster features [K,D].
    /// `tick` is called once per Euler step of each batch.
    pub fn sample(
        &mut self,
        features: ArrayView2<'_, f32>,
        genes: usize,
        params: &SampleParams,
        tick: &mut dyn FnMut(),
    ) -> Result<Array2<f32>> {
        self.sample_draws(features, genes, params, 0, params.samples, tick)
    }

    /// Draws `first..first + count` of the noise stream of `params.seed` (`params.samples`
    /// is not used): the same draws whichever model of an ensemble or batch takes them.
    pub fn sample_draws(
        &mut self,
        features: ArrayView2<'_, f32>,
        genes: usize,
        params: &SampleParams,
        first: usize,
        count: usize,
        tick: &mut dyn FnMut(),
    ) -> Result<Array2<f32>> {
        if params.steps < 2 {
            return Err(Error::Runtime(format!(
                "steps must be at least 2 time points, got {}",
                params.steps
            )));
        }
        let mut out = Array2::<f32>::zeros((count, genes));
        if count == 0 {
            return Ok(out);
        }
        let slide_emb = self.slide_embedding(features)?;
        // Once per slide, shared by every chunk: a sample's modulations do not depend on how
        // the samples are chunked.
        let grid = time_grid(params.steps);
        let mods = self.grid_modulations(&grid, &slide_emb)?;
        let mut done = 0;
        for (offset, n) in chunks(count, params.batch) {
            let z = noise(params.seed, first + offset, n, genes);
            let x = self.integrate_with(z, &mods, &grid, params.cfg, tick)?;
            out.slice_mut(s![offset..offset + n, ..]).assign(&x);
            done += n;
        }
        debug_assert_eq!(done, count);
        Ok(out)
    }
}

impl FlowGraphs {
    /// Draws `first..first + count` of the noise stream of `params.seed` for each of several
    /// inputs (cluster features [K,D]), their rows integrated together in batches of
    /// `params.batch` rows: when each input has fewer draws than a batch holds, one graph
    /// call serves several slides. Draw j of an input is the number [`Self::sample_draws`]
    /// gives it, whatever shares its batch. `tick` once per Euler step of each batch.
    pub fn sample_draws_many(
        &mut self,
        inputs: &[ArrayView2<'_, f32>],
        genes: usize,
        params: &SampleParams,
        first: usize,
        count: usize,
        tick: &mut dyn FnMut(),
    ) -> Result<Vec<Array2<f32>>> {
        if params.steps < 2 {
            return Err(Error::Runtime(format!(
                "steps must be at least 2 time points, got {}",
                params.steps
            )));
        }
        let mut outs = vec![Array2::<f32>::zeros((count, genes)); inputs.len()];
        if count == 0 || inputs.is_empty() {
            return Ok(outs);
        }
        let grid = time_grid(params.steps);
        let mods = inputs
            .iter()
            .map(|f| {
                let emb = self.slide_embedding(*f)?;
                self.grid_modulations(&grid, &emb)
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Modulations> = mods.iter().collect();
        let rows: Vec<(usize, usize)> = (0..inputs.len())
            .flat_map(|s| (0..count).map(move |j| (s, j)))
            .collect();
        for (offset, n) in chunks(rows.len(), params.batch) {
            let part = &rows[offset..offset + n];
            let mut z = Array2::<f32>::zeros((n, genes));
            for (r, &(_, j)) in part.iter().enumerate() {
                z.row_mut(r)
                    .assign(&noise(params.seed, first + j, 1, genes).row(0));
            }
            let owners: Vec<usize> = part.iter().map(|&(s, _)| s).collect();
            let x = self.integrate_rows(z, &refs, &owners, &grid, params.cfg, tick)?;
            for (r, &(s, j)) in part.iter().enumerate() {
                outs[s].row_mut(j).assign(&x.row(r));
            }
        }
        Ok(outs)
    }
}

/// `count` draws in as many chunks as `batch` requires, of near-equal size (100 at batch 16:
/// 2 × 15 and 5 × 14, not 6 × 16 and a slow 4): (offset, size) of each.
pub fn chunks(count: usize, batch: usize) -> Vec<(usize, usize)> {
    blocks(count, count.div_ceil(batch.max(1)))
}

/// `count` draws in `parts` near-equal contiguous blocks, the earlier blocks taking the
/// remainder (5 draws in 2: 0..3 and 3..5): (first, size) of each. Chunks of a batch, and
/// the models' shares of a fold ensemble.
pub fn blocks(count: usize, parts: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(parts);
    let mut first = 0;
    for c in 0..parts {
        let size = count / parts + usize::from(c < count % parts);
        out.push((first, size));
        first += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_does_not_depend_on_batching() {
        let all = noise(7, 0, 5, 11);
        let tail = noise(7, 3, 2, 11);
        assert_eq!(all.slice(s![3.., ..]), tail);
        assert_ne!(all.row(0), all.row(1));
        assert_ne!(noise(8, 0, 1, 11).row(0), all.row(0));
        let m = all.mean().unwrap_or(f32::NAN);
        assert!(m.abs() < 1.0 && m.is_finite());
    }

    #[test]
    fn chunks_are_near_equal_and_cover_every_draw() {
        let c = chunks(100, 16);
        assert_eq!(c.len(), 7);
        assert_eq!(c.iter().map(|x| x.1).sum::<usize>(), 100);
        assert!(c.iter().all(|x| x.1 == 14 || x.1 == 15));
        assert_eq!(c[0], (0, 15));
        assert_eq!(c[6], (86, 14));
        assert!(chunks(0, 4).is_empty());
        assert_eq!(chunks(3, 0), vec![(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn blocks_cover_every_draw_once() {
        assert_eq!(blocks(5, 2), vec![(0, 3), (3, 2)]);
        assert_eq!(blocks(1, 3), vec![(0, 1), (1, 0), (1, 0)]);
        for (s, k) in [(100, 5), (7, 3), (0, 2)] {
            let b = blocks(s, k);
            assert_eq!(b.iter().map(|x| x.1).sum::<usize>(), s);
            assert!(b.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
    }

    #[test]
    fn grid_is_torch_linspace_with_exact_ends() {
        let g = time_grid(20);
        assert_eq!(g.len(), 20);
        assert_eq!((g[0], g[19]), (0.0, 1.0));
        let step = 1.0f32 / 19.0;
        // torch's two halves: 9·step from the start, 1 − 9·step from the end
        assert_eq!(g[9], step * 9.0);
        assert_eq!(g[10], 1.0 - step * 9.0);
        for (i, v) in g.iter().enumerate() {
            assert!((v - i as f32 / 19.0).abs() < 1e-6);
        }
        assert_eq!(time_grid(1), vec![0.0]);
    }
}
