//! A fold ensemble: the k models of a cross-validated run in one bundle. The draws of a slide
//! are split across them in contiguous blocks of the one noise stream, so the mean over the
//! draws is the mean over the models (a standard variance reducer) and a one-model ensemble
//! samples exactly as a single model does. Each fold z-scores its targets with its own
//! training patients' mean and sd, so a model's draws are mapped into model 0's z-scale.

use ndarray::{Array2, ArrayView2, s};

use crate::anchor::Anchor;
use crate::error::Result;
use crate::manifest::EnsembleModel;
use crate::normalization::Normalization;
use crate::sampler::{FlowGraphs, SampleParams, blocks, chunks};

/// Per-gene `z0 = z · scale + shift`: a model's z-scores in model 0's z-scale.
#[derive(Debug, Clone, PartialEq)]
pub struct ToFirst {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl ToFirst {
    /// Maps draws [n, G] of this model into model 0's z-scale, in place.
    pub fn apply(&self, x: &mut Array2<f32>) {
        for mut row in x.rows_mut() {
            for ((v, a), b) in row.iter_mut().zip(&self.scale).zip(&self.shift) {
                *v = *v * a + b;
            }
        }
    }

    /// From model k's normalisation to model 0's (same genes): the same log2 value,
    /// `z_k · sd_k + mean_k = z0 · sd_0 + mean_0`.
    pub fn new(own: &Normalization, first: &Normalization) -> Self {
        let sd = |n: &Normalization, g: usize| n.sd[g].max(Normalization::MIN_SD);
        let (scale, shift) = (0..first.len())
            .map(|g| {
                (
                    sd(own, g) / sd(first, g),
                    (own.mean[g] - first.mean[g]) / sd(first, g),
                )
            })
            .unzip();
        ToFirst { scale, shift }
    }

    /// The maps of a bundle's models: none for model 0, then one for each further model
    /// (the manifest's `ensemble` entries) where both it and model 0 have a normalisation.
    pub fn for_models(
        first: Option<&Normalization>,
        others: &[EnsembleModel],
    ) -> Vec<Option<Self>> {
        std::iter::once(None)
            .chain(others.iter().map(|e| {
                e.normalization
                    .as_ref()
                    .zip(first)
                    .map(|(own, first)| ToFirst::new(own, first))
            }))
            .collect()
    }
}

pub struct Ensemble {
    models: Vec<FlowGraphs>,
    /// One per model; None where the draws are already in model 0's z-scale.
    maps: Vec<Option<ToFirst>>,
    /// One per model of an anchored bundle (added in the model's own z-scale, before its
    /// map); empty otherwise.
    anchors: Vec<Anchor>,
}

impl Ensemble {
    /// One model.
    pub fn single(model: FlowGraphs) -> Self {
        Ensemble {
            models: vec![model],
            maps: vec![None],
            anchors: Vec::new(),
        }
    }

    /// At least one model, each with its map into model 0's z-scale; all share the gene list
    /// and hidden size (the loader checks).
    pub fn new(models: Vec<FlowGraphs>, maps: Vec<Option<ToFirst>>) -> Self {
        assert!(!models.is_empty(), "an ensemble needs a model");
        assert_eq!(models.len(), maps.len(), "one map per model");
        Ensemble {
            models,
            maps,
            anchors: Vec::new(),
        }
    }

    /// The same models with their mean anchors, one per model (`anchor.rs`).
    pub fn with_anchors(mut self, anchors: Vec<Anchor>) -> Self {
        assert_eq!(anchors.len(), self.models.len(), "one anchor per model");
        self.anchors = anchors;
        self
    }

    /// Model `k`'s draws [n, G] for `features` into model 0's z-scale: its anchor added, then
    /// its map applied.
    fn finish(&self, k: usize, features: ArrayView2<'_, f32>, x: &mut Array2<f32>) {
        if let Some(a) = self.anchors.get(k) {
            a.add_to(features, x);
        }
        if let Some(m) = &self.maps[k] {
            m.apply(x);
        }
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Token width H.
    pub fn hidden(&self) -> usize {
        self.models[0].hidden()
    }

    /// (first draw, draws) of each model for `samples` draws: near-equal contiguous blocks
    /// ([`blocks`]).
    pub fn split(&self, samples: usize) -> Vec<(usize, usize)> {
        blocks(samples, self.models.len())
    }

    /// Batches × Euler steps that `params` costs one slide (progress bars count these).
    pub fn ticks(&self, params: &SampleParams) -> usize {
        let per_batch = params.steps.max(1) - 1;
        self.split(params.samples)
            .iter()
            .map(|&(_, n)| chunks(n, params.batch).len() * per_batch)
            .sum()
    }

    /// `params.samples` z-space draws [n, G] for one slide's cluster features [K, D]; `tick`
    /// is called once per Euler step of each batch.
    pub fn sample(
        &mut self,
        features: ArrayView2<'_, f32>,
        genes: usize,
        params: &SampleParams,
        tick: &mut dyn FnMut(),
    ) -> Result<Array2<f32>> {
        let mut out = Array2::<f32>::zeros((params.samples, genes));
        let blocks = self.split(params.samples);
        for (k, (first, n)) in blocks.into_iter().enumerate() {
            if n == 0 {
                continue;
            }
            let mut x = self.models[k].sample_draws(features, genes, params, first, n, tick)?;
            self.finish(k, features, &mut x);
            out.slice_mut(s![first..first + n, ..]).assign(&x);
        }
        Ok(out)
    }

    /// [`Self::sample`] for several slides at once: their rows share the graph calls
    /// (`FlowGraphs::sample_draws_many`), each slide's draws the numbers `sample` gives it.
    pub fn sample_many(
        &mut self,
        inputs: &[ArrayView2<'_, f32>],
        genes: usize,
        params: &SampleParams,
        tick: &mut dyn FnMut(),
    ) -> Result<Vec<Array2<f32>>> {
        let mut outs = vec![Array2::<f32>::zeros((params.samples, genes)); inputs.len()];
        let blocks = self.split(params.samples);
        for (k, (first, n)) in blocks.into_iter().enumerate() {
            if n == 0 {
                continue;
            }
            let xs = self.models[k].sample_draws_many(inputs, genes, params, first, n, tick)?;
            for ((out, mut x), features) in outs.iter_mut().zip(xs).zip(inputs) {
                self.finish(k, *features, &mut x);
                out.slice_mut(s![first..first + n, ..]).assign(&x);
            }
        }
        Ok(outs)
    }

    /// Batches × Euler steps that [`Self::sample_many`] costs for `slides` slides.
    pub fn ticks_many(&self, params: &SampleParams, slides: usize) -> usize {
        let per_batch = params.steps.max(1) - 1;
        self.split(params.samples)
            .iter()
            .filter(|&&(_, n)| n > 0)
            .map(|&(_, n)| chunks(n * slides, params.batch).len() * per_batch)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::{Normalization, ToFirst};

    #[test]
    fn to_first_keeps_the_log2_value() {
        let p = std::path::Path::new("t");
        let first = Normalization::new(vec![1.0, 5.0], vec![2.0, 0.5], p).unwrap();
        let own = Normalization::new(vec![2.0, 4.0], vec![1.0, 1.5], p).unwrap();
        let m = ToFirst::new(&own, &first);
        for (g, zk) in [(0, 0.3f32), (1, -1.2)] {
            let z0 = zk * m.scale[g] + m.shift[g];
            assert!((first.from_z(g, z0) - own.from_z(g, zk)).abs() < 1e-5);
        }
    }
}
