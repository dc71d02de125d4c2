//! Parity with the official PyTorch RNA-FM: the fixture's weights loaded into the burn
//! model must reproduce the official velocities and Euler samples.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use rnafm_official::{check_add_mask, spec_from_official};
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;
use rnafm_trainer::sampler::sample;
use rnafm_trainer::velocity_net::VelocityNet;
use rnafm_trainer::weight_io::to_vec;

type B = Flex;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

fn npy(name: &str) -> ArrayD<f32> {
    let a: ArrayD<f32> = read_npy(fixture().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    a
}

fn tensor<const D: usize>(a: &ArrayD<f32>) -> Tensor<B, D> {
    let shape: [usize; D] = a.shape().try_into().expect("rank");
    let data: Vec<f32> = a.iter().copied().collect();
    Tensor::from_data(TensorData::new(data, shape), &Default::default())
}

fn max_diff(got: &Tensor<B, 2>, want: &ArrayD<f32>) -> f32 {
    let g = to_vec(got);
    assert_eq!(g.len(), want.len());
    let d = g
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
    eprintln!("max |diff| {d:e} (max |want| {scale})");
    d
}

fn load() -> (ModelSpec, WeightMap, VelocityNet<B>) {
    let dir = fixture();
    let wpath = dir.join("weights.safetensors");
    let map = WeightMap::read_safetensors(&wpath).expect("fixture weights");
    let spec = spec_from_official(
        &map,
        &wpath,
        &dir.join("pathways.json"),
        Some(&dir.join("genes.txt")),
        4,
    )
    .expect("spec");
    let net =
        VelocityNet::<B>::from_weights(&spec, &map, &wpath, &Default::default()).expect("load");
    (spec, map, net)
}

#[test]
fn config_is_inferred_from_fixture_shapes() {
    let (spec, _, _) = load();
    let c = &spec.config;
    assert_eq!(
        (
            c.hidden,
            c.depth,
            c.clusters,
            c.feat_dim,
            c.genes,
            c.mlp_ratio
        ),
        (64, 2, 8, 48, 600, 4)
    );
    assert!(c.graph_attention);
    assert_eq!(spec.pathways.len(), 24);
    assert_eq!(spec.pathways.background.len(), 40);
}

#[test]
fn add_mask_matches_pathways() {
    let (spec, map, _) = load();
    check_add_mask(&map, &spec.pathways, Path::new("fixture")).expect("same mask");
    let fixture_mask = &map.tensors["pathway_graph.add_mask"].data;
    assert!(
        fixture_mask.iter().any(|&m| m != 0.0),
        "the fixture's mask blocks some pairs"
    );
}

#[test]
fn velocities_match_official() {
    let (_, _, net) = load();
    let x = tensor::<2>(&npy("x.npy"));
    let t = tensor::<1>(&npy("t.npy"));
    let y = tensor::<3>(&npy("y.npy"));
    let v = net.forward(x.clone(), t.clone(), y.clone());
    let d = max_diff(&v, &npy("v_cond.npy"));
    assert!(d <= 1e-4, "v_cond max |diff| {d}");
    let v = net.forward_cfg(x, t, y, 2.0);
    let d = max_diff(&v, &npy("v_cfg.npy"));
    assert!(d <= 1e-4, "v_cfg max |diff| {d}");
}

#[test]
fn euler_samples_match_official() {
    let (_, _, net) = load();
    let z = tensor::<2>(&npy("z.npy"));
    let y = tensor::<3>(&npy("y.npy"));
    let s = sample(&net, z.clone(), y.clone(), 20, Some(2.0));
    let d = max_diff(&s, &npy("sample.npy"));
    assert!(d <= 1e-3, "sample max |diff| {d}");
    let s = sample(&net, z, y, 20, None);
    let d = max_diff(&s, &npy("sample_nocfg.npy"));
    assert!(d <= 1e-3, "sample_nocfg max |diff| {d}");
}

#[test]
fn weights_round_trip_in_official_names() {
    let (_, map, net) = load();
    let back = net.to_weights();
    for (name, t) in &map.tensors {
        let b = back
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("{name} not written back"));
        assert_eq!(b.shape, t.shape, "{name}");
        assert_eq!(b.data, t.data, "{name}");
    }
    assert_eq!(back.tensors.len(), map.tensors.len());
}
