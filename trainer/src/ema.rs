//! Exponential moving average of the weights, with the official ramped decay: 0.85 → 0.9
//! over the first 2,500 steps, then 0.9 → 0.999 over the next 7,500, then 0.999.

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// Decay for optimiser step `step` (0-based).
pub fn ema_decay(step: u64) -> f64 {
    let s = step as f64;
    if s < 2500.0 {
        0.85 + 0.05 * s / 2500.0
    } else if s < 10_000.0 {
        0.9 + 0.099 * (s - 2500.0) / 7500.0
    } else {
        0.999
    }
}

/// Decay for step `step` with a fixed target `max`: (1 + step)/(10 + step) capped at `max`,
/// the usual warm-up, so that the average does not cling to the initial weights. For short
/// runs (a few hundred steps), where the official ramp's 0.85–0.9 averages only the last
/// ~10 steps.
pub fn ema_decay_capped(step: u64, max: f64) -> f64 {
    let s = step as f64;
    ((1.0 + s) / (10.0 + s)).min(max)
}

/// Collects a module's float parameters, flattened, in visiting order.
struct Collect<B: Backend> {
    params: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.params.push(t.reshape([n]));
    }
}

/// ema ← decay·ema + (1 − decay)·model, parameter by parameter in visiting order.
struct Blend<B: Backend> {
    model: std::vec::IntoIter<Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, ema, mapper) = param.consume();
        let shape = ema.dims();
        let m = self
            .model
            .next()
            .expect("EMA and model have the same parameters");
        let new = ema * self.decay + m.reshape(shape) * (1.0 - self.decay);
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Updates `ema` towards `model` (same architecture, any backend for the model's values).
pub fn ema_update<M: Module<B>, B: Backend>(ema: M, model: &M, decay: f64) -> M {
    let mut c = Collect { params: Vec::new() };
    model.visit(&mut c);
    let mut b = Blend {
        model: c.params.into_iter(),
        decay,
    };
    ema.map(&mut b)
}

/// Gives every float parameter a deterministic id (its visiting index), so optimiser
/// state saved by id matches a model rebuilt from weights after `--resume`.
struct Renumber {
    next: u64,
}

impl<B: Backend> ModuleMapper<B> for Renumber {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, t, mapper) = param.consume();
        self.next += 1;
        Param::from_mapped_value(ParamId::from(self.next), t, mapper)
    }
}

pub fn renumber_params<M: Module<B>, B: Backend>(m: M) -> M {
    m.map(&mut Renumber { next: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_ramps_as_the_official_schedule() {
        assert!((ema_decay(0) - 0.85).abs() < 1e-12);
        assert!((ema_decay(1250) - 0.875).abs() < 1e-12);
        assert!((ema_decay(2500) - 0.9).abs() < 1e-12);
        assert!((ema_decay(6250) - 0.9495).abs() < 1e-12);
        assert_eq!(ema_decay(10_000), 0.999);
        assert_eq!(ema_decay(1_000_000), 0.999);
    }

    #[test]
    fn capped_decay_warms_up_then_holds() {
        assert!((ema_decay_capped(0, 0.99) - 0.1).abs() < 1e-12);
        assert!((ema_decay_capped(90, 0.99) - 0.91).abs() < 1e-12);
        assert_eq!(ema_decay_capped(10_000, 0.99), 0.99);
    }
}
