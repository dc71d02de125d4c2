//! Euler integration of the learned flow from noise to expression, with optional
//! classifier-free guidance; the official sampler (grid linspace(0, 1, T), T − 1 steps).

use burn::prelude::*;

use crate::fused::FusedOps;
use crate::velocity_net::VelocityNet;
use rnafm_runtime::sampler::time_grid;

/// Integrates from `z` [B, G] under slide features `y` [B, K, D] over `points` time
/// points. `cfg` = Some(s) uses guidance scale s; None uses the conditional velocity.
pub fn sample<B: FusedOps>(
    net: &VelocityNet<B>,
    z: Tensor<B, 2>,
    y: Tensor<B, 3>,
    points: usize,
    cfg: Option<f64>,
) -> Tensor<B, 2> {
    let b = z.dims()[0];
    let device = z.device();
    let grid = time_grid(points);
    let mut s = z;
    for w in grid.windows(2) {
        let t = Tensor::<B, 1>::from_data(TensorData::new(vec![w[0]; b], [b]), &device);
        let v = match cfg {
            Some(scale) => net.forward_cfg(s.clone(), t, y.clone(), scale),
            None => net.forward(s.clone(), t, y.clone()),
        };
        s = s + v * f64::from(w[1] - w[0]);
    }
    s
}
