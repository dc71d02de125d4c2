//! The two engines of rnafm agree: a model sampled with the trainer's burn sampler and the
//! same model exported to a `.rnafm` bundle and sampled by the runtime on ONNX Runtime give
//! the same profiles from the same noise (≤ 1e-3 after 19 guided Euler steps), with and
//! without guidance. Weights are random (every path non-zero), not zero-initialised.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rnafm_exporter::bundle_export::{ExportInfo, bundle};
use rnafm_exporter::random_weights::random_official;
use rnafm_official::read_genes_and_pathways;
use rnafm_runtime::bundle::Bundle;
use rnafm_runtime::model_config::ModelConfig;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::ort_env::{DeviceChoice, SessionOptions};
use rnafm_trainer::velocity_net::VelocityNet;
use rnafm_trainer::weight_io::to_vec;

type B = Flex;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

/// Real pathway layout of the fixture (24 overlapping pathways, 40 background genes) with
/// a model shape of our own.
fn spec() -> ModelSpec {
    let dir = fixture();
    let (genes, pathways) =
        read_genes_and_pathways(&dir.join("pathways.json"), Some(&dir.join("genes.txt")))
            .expect("fixture pathways");
    let mut config = ModelConfig::paper(genes.len(), 6, 40);
    config.hidden = 32;
    config.depth = 2;
    config.heads = 4;
    ModelSpec {
        config,
        genes,
        pathways,
        normalization: None,
    }
}

fn normal(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
}

#[test]
fn onnx_bundle_reproduces_burn_sampler() {
    let spec = spec();
    let c = spec.config.clone();
    let (b, g, k, d) = (3usize, c.genes, c.clusters, c.feat_dim);
    let origin = Path::new("random weights");
    let weights = random_official(&spec, 11);

    // burn
    let device = Default::default();
    let net = VelocityNet::<B>::from_weights(&spec, &weights, origin, &device).expect("burn model");
    let z = Array2::from_shape_vec((b, g), normal(b * g, 1)).unwrap();
    let y = Array3::from_shape_vec((b, k, d), normal(b * k * d, 2)).unwrap();
    let zt = Tensor::<B, 2>::from_data(
        TensorData::new(z.iter().copied().collect(), [b, g]),
        &device,
    );
    let yt = Tensor::<B, 3>::from_data(
        TensorData::new(y.iter().copied().collect(), [b, k, d]),
        &device,
    );

    // ONNX: export to a bundle file, open it as rnafm-run does.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.rnafm");
    let graphs = rnafm_exporter::graphs::build(&spec, &weights, origin, |_| {}).expect("graphs");
    let info = ExportInfo {
        self_test: false,
        ..ExportInfo::default()
    };
    bundle(&spec, &graphs, &info, origin)
        .unwrap()
        .write(&path)
        .unwrap();
    let bun = Bundle::open(&path).expect("bundle opens");
    let (mut flow, _, _) = rnafm_runtime::run::model::load_graphs(
        &path,
        SessionOptions {
            device: DeviceChoice::Cpu,
            threads: 1,
        },
        |n| bun.member(n),
    )
    .expect("ONNX Runtime sessions (run scripts/setup.sh)");

    for (cfg, burn_cfg) in [(2.0f32, Some(2.0f64)), (1.0, None)] {
        let want = to_vec(&rnafm_trainer::sampler::sample(
            &net,
            zt.clone(),
            yt.clone(),
            20,
            burn_cfg,
        ));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let moved = want
            .iter()
            .zip(z.iter())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(moved > 0.1, "the flow must move the state (moved {moved})");
        let mut worst = 0f32;
        for i in 0..b {
            let emb = flow
                .slide_embedding(y.index_axis(ndarray::Axis(0), i))
                .unwrap();
            let start = z.row(i).insert_axis(ndarray::Axis(0)).to_owned();
            let got = flow.integrate(start, &emb, 20, cfg, &mut || {}).unwrap();
            for (j, v) in got.iter().enumerate() {
                worst = worst.max((v - want[i * g + j]).abs());
            }
        }
        eprintln!("cfg {cfg}: max |burn − onnx| {worst:e} (max |sample| {scale})");
        assert!(worst <= 1e-3, "cfg {cfg}: engines differ by {worst}");
    }
}
