//! The sampler on four tiny hand-encoded ONNX graphs that follow the bundle's graph contract
//! but compute a velocity simple enough to integrate independently here:
//!   slide_emb = mean_k features;  tokens = reshape(x, [B,P,H]);  bg = mean_p tokens;
//!   tokens_out = −tokens;  c = slide_emb + t;  v = reshape(tokens_out + c + bg, [B,G]).
//! Checks the wiring (guidance branches, cfg formula, Euler grid, noise per sample) and that
//! results do not depend on batch size or thread count, also where a real GEMM is involved.

mod common;

use common::toy_graph_bytes;
use ndarray::{Array1, Array2, array, s};
use rnafm_runtime::ort_env::{DeviceChoice, SessionFactory, SessionOptions};
use rnafm_runtime::sampler::{FlowGraphs, SampleParams, noise, time_grid};

const P: usize = 2;
const H: usize = 3;
const G: usize = P * H;
const K: usize = 2;

fn toy_graphs(threads: usize) -> FlowGraphs {
    toy_graphs_sized(threads, P, H, None)
}

fn toy_graphs_sized(threads: usize, p: usize, h: usize, mix: Option<&[f32]>) -> FlowGraphs {
    let [condition, modulation, embed, backbone, heads] = toy_graph_bytes(p, h, mix);
    let mut f = SessionFactory::new(SessionOptions {
        device: DeviceChoice::Cpu,
        threads,
    })
    .expect("ONNX Runtime (run scripts/setup.sh)");
    FlowGraphs {
        condition: f.session(&condition, "condition.onnx").unwrap(),
        modulation: f.session(&modulation, "modulation.onnx").unwrap(),
        embed: f.session(&embed, "embed.onnx").unwrap(),
        backbone: f.session(&backbone, "backbone.onnx").unwrap(),
        heads: f.session(&heads, "heads.onnx").unwrap(),
        null_slide_emb: if h == H {
            array![0.5f32, -1.0, 2.0]
        } else {
            Array1::from_shape_fn(h, |i| (i as f32 * 0.37).sin())
        },
        mapped: Default::default(),
    }
}

fn features() -> Array2<f32> {
    array![[1.0f32, 2.0, -3.0], [3.0, 0.0, 1.0]]
}

/// The toy velocity computed directly, with guidance.
fn reference_velocity(
    x: &Array2<f32>,
    t: f32,
    m: &Array1<f32>,
    mu: &Array1<f32>,
    cfg: f32,
) -> Array2<f32> {
    let mut v = Array2::<f32>::zeros(x.dim());
    for b in 0..x.nrows() {
        for h in 0..H {
            let bg = (0..P).map(|p| x[[b, p * H + h]]).sum::<f32>() / P as f32;
            let cu = mu[h] + t;
            let cc = m[h] + t;
            for p in 0..P {
                let g = p * H + h;
                let vu = -x[[b, g]] + cu + bg;
                let vc = -x[[b, g]] + cc + bg;
                v[[b, g]] = vu + cfg * (vc - vu);
            }
        }
    }
    v
}

#[test]
fn toy_sampler_matches_direct_euler_integration() {
    let mut graphs = toy_graphs(1);
    let f = features();
    let emb = graphs.slide_embedding(f.view()).unwrap();
    assert_eq!(emb, array![2.0f32, 1.0, -1.0]);
    let params = SampleParams {
        samples: 4,
        steps: 6,
        cfg: 2.5,
        seed: 11,
        batch: 3,
    };
    let got = graphs.sample(f.view(), G, &params, &mut || {}).unwrap();
    let mut want = noise(11, 0, 4, G);
    let mu = graphs.null_slide_emb.clone();
    let grid = time_grid(6);
    for w in grid.windows(2) {
        let v = reference_velocity(&want, w[0], &emb, &mu, 2.5);
        want = &want + &(v * (w[1] - w[0]));
    }
    let diff = (&got - &want).mapv(f32::abs).fold(0f32, |a, &b| a.max(b));
    assert!(diff < 1e-5, "max |diff| {diff}");
    // Guidance matters: without it the result differs.
    let plain = graphs
        .sample(
            f.view(),
            G,
            &SampleParams { cfg: 1.0, ..params },
            &mut || {},
        )
        .unwrap();
    assert!((&plain - &got).mapv(f32::abs).sum() > 1e-3);
}

#[test]
fn toy_sampler_is_independent_of_batch_and_threads() {
    let f = features();
    let params = SampleParams {
        samples: 5,
        steps: 20,
        cfg: 2.0,
        seed: 3,
        batch: 5,
    };
    let mut one = toy_graphs(1);
    let whole = one.sample(f.view(), G, &params, &mut || {}).unwrap();
    let mut ticks = 0;
    let split = one
        .sample(
            f.view(),
            G,
            &SampleParams { batch: 2, ..params },
            &mut || ticks += 1,
        )
        .unwrap();
    assert_eq!(whole, split);
    assert_eq!(
        ticks,
        3 * 19,
        "one tick per Euler step of each of 3 batches"
    );
    let mut two = toy_graphs(2);
    assert_eq!(whole, two.sample(f.view(), G, &params, &mut || {}).unwrap());
    // A different seed changes the samples, sample 3 of a run is sample 3 of a longer run.
    let other = one
        .sample(f.view(), G, &SampleParams { seed: 4, ..params }, &mut || {})
        .unwrap();
    assert_ne!(whole, other);
    let longer = one
        .sample(
            f.view(),
            G,
            &SampleParams {
                samples: 7,
                ..params
            },
            &mut || {},
        )
        .unwrap();
    assert_eq!(longer.slice(s![..5, ..]), whole);
}

#[test]
fn wrong_feature_width_is_an_error() {
    let mut graphs = toy_graphs(1);
    let bad = Array2::<f32>::zeros((K, H + 1));
    let e = graphs.slide_embedding(bad.view()).unwrap_err().to_string();
    assert!(e.contains("condition.onnx"), "{e}");
}

#[test]
fn gemm_results_do_not_depend_on_batch_or_threads() {
    let (p, h) = (8, 64);
    let g = p * h;
    let w: Vec<f32> = (0..g * g)
        .map(|i| ((i as f32 * 0.618).fract() - 0.5) * 0.1)
        .collect();
    let f = Array2::from_shape_fn((4, h), |(k, d)| ((k * h + d) as f32 * 0.31).cos());
    let params = SampleParams {
        samples: 7,
        steps: 5,
        cfg: 2.0,
        seed: 1,
        batch: 7,
    };
    let mut one = toy_graphs_sized(1, p, h, Some(&w));
    let whole = one.sample(f.view(), g, &params, &mut || {}).unwrap();
    assert!(whole.iter().all(|v| v.is_finite()));
    for batch in [1, 2, 3, 4, 5, 6] {
        let b = one
            .sample(f.view(), g, &SampleParams { batch, ..params }, &mut || {})
            .unwrap();
        assert_eq!(whole, b, "batch {batch}");
    }
    let mut two = toy_graphs_sized(2, p, h, Some(&w));
    assert_eq!(whole, two.sample(f.view(), g, &params, &mut || {}).unwrap());
    // Without guidance a lone sample is a single row in every graph.
    let plain = SampleParams { cfg: 1.0, ..params };
    let whole = one.sample(f.view(), g, &plain, &mut || {}).unwrap();
    for batch in [1, 3] {
        let b = one
            .sample(f.view(), g, &SampleParams { batch, ..plain }, &mut || {})
            .unwrap();
        assert_eq!(whole, b, "cfg 1, batch {batch}");
    }
}
