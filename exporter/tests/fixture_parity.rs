//! The exported graphs reproduce the official PyTorch model (fixture `official-small`):
//! velocities with and without guidance and a 19-step guided Euler run, on ONNX Runtime and
//! on tract (the standard-ONNX form, fused attention written out).

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3, ArrayD, Axis, Ix1, Ix2, Ix3, concatenate};
use ort::session::Session;
use ort::value::TensorRef;
use rnafm_exporter::graphs::{self, Graphs};
use rnafm_official::spec_from_official;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::ort_env::{DeviceChoice, SessionFactory, SessionOptions};
use rnafm_runtime::weights::WeightMap;
use tract_onnx::prelude::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

fn npy(name: &str) -> ArrayD<f32> {
    ndarray_npy::read_npy(fixture().join(name)).expect(name)
}

/// The fixture's graphs as bundles hold them, or (`portable`) in standard ONNX only.
fn export_as(portable: bool) -> (ModelSpec, Graphs) {
    let f = fixture();
    let w = WeightMap::read_safetensors(&f.join("weights.safetensors")).unwrap();
    let spec = spec_from_official(
        &w,
        &f.join("weights.safetensors"),
        &f.join("pathways.json"),
        Some(&f.join("genes.txt")),
        4,
    )
    .unwrap();
    assert_eq!(spec.config.hidden, 64);
    assert_eq!(spec.config.depth, 2);
    let g = if portable {
        graphs::build_portable(&spec, &w, &f).unwrap()
    } else {
        graphs::build(&spec, &w, &f, |_| {}).unwrap()
    };
    (spec, g)
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// adaLN modulations of the blocks, the pathway heads and the background head.
type Mods = (Array3<f32>, Array3<f32>, Array2<f32>);

/// One engine's view of the five graphs.
trait Engine {
    fn condition(&mut self, y: &Array3<f32>) -> Array2<f32>;
    fn modulation(&mut self, t: &Array1<f32>, s: &Array2<f32>) -> Mods;
    fn embed(&mut self, x: &Array2<f32>) -> (Array3<f32>, Array3<f32>);
    fn backbone(&mut self, tok: &Array3<f32>, m: &Array3<f32>) -> Array3<f32>;
    fn heads(&mut self, tok: &Array3<f32>, bg: &Array3<f32>, m: &Mods) -> Array2<f32>;
}

struct Ort([Session; 5]);

fn o2(o: &ort::session::SessionOutputs<'_>, n: &str) -> ArrayD<f32> {
    o[n].try_extract_array::<f32>().unwrap().to_owned()
}

impl Engine for Ort {
    fn condition(&mut self, y: &Array3<f32>) -> Array2<f32> {
        let o = self.0[0]
            .run(ort::inputs!["features" => TensorRef::from_array_view(y).unwrap()])
            .unwrap();
        o2(&o, "slide_emb").into_dimensionality::<Ix2>().unwrap()
    }
    fn modulation(&mut self, t: &Array1<f32>, s: &Array2<f32>) -> Mods {
        let o = self.0[1]
            .run(ort::inputs![
                "t" => TensorRef::from_array_view(t).unwrap(),
                "slide_emb" => TensorRef::from_array_view(s).unwrap()
            ])
            .unwrap();
        (
            o2(&o, "block_mod").into_dimensionality::<Ix3>().unwrap(),
            o2(&o, "head_mod").into_dimensionality::<Ix3>().unwrap(),
            o2(&o, "bg_mod").into_dimensionality::<Ix2>().unwrap(),
        )
    }
    fn embed(&mut self, x: &Array2<f32>) -> (Array3<f32>, Array3<f32>) {
        let o = self.0[2]
            .run(ort::inputs!["x" => TensorRef::from_array_view(x).unwrap()])
            .unwrap();
        (
            o2(&o, "tokens").into_dimensionality::<Ix3>().unwrap(),
            o2(&o, "bg_token").into_dimensionality::<Ix3>().unwrap(),
        )
    }
    fn backbone(&mut self, tok: &Array3<f32>, m: &Array3<f32>) -> Array3<f32> {
        let o = self.0[3]
            .run(ort::inputs![
                "tokens" => TensorRef::from_array_view(tok).unwrap(),
                "block_mod" => TensorRef::from_array_view(m).unwrap()
            ])
            .unwrap();
        o2(&o, "tokens_out").into_dimensionality::<Ix3>().unwrap()
    }
    fn heads(&mut self, tok: &Array3<f32>, bg: &Array3<f32>, m: &Mods) -> Array2<f32> {
        let o = self.0[4]
            .run(ort::inputs![
                "tokens_out" => TensorRef::from_array_view(tok).unwrap(),
                "bg_token" => TensorRef::from_array_view(bg).unwrap(),
                "head_mod" => TensorRef::from_array_view(&m.1).unwrap(),
                "bg_mod" => TensorRef::from_array_view(&m.2).unwrap()
            ])
            .unwrap();
        o2(&o, "v").into_dimensionality::<Ix2>().unwrap()
    }
}

type Plan = TypedRunnableModel;
struct Tract([Arc<Plan>; 5]);

fn tract_plan(bytes: &[u8]) -> Arc<Plan> {
    tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
}

fn trun(p: &Arc<Plan>, inputs: Vec<ArrayD<f32>>) -> Vec<ArrayD<f32>> {
    let out = p
        .run(inputs.into_iter().map(|a| a.into_tensor().into()).collect())
        .unwrap();
    out.iter()
        .map(|t| t.to_plain_array_view::<f32>().unwrap().to_owned())
        .collect()
}

impl Engine for Tract {
    fn condition(&mut self, y: &Array3<f32>) -> Array2<f32> {
        trun(&self.0[0], vec![y.clone().into_dyn()])
            .remove(0)
            .into_dimensionality()
            .unwrap()
    }
    fn modulation(&mut self, t: &Array1<f32>, s: &Array2<f32>) -> Mods {
        let mut o = trun(&self.0[1], vec![t.clone().into_dyn(), s.clone().into_dyn()]);
        let bg = o.pop().unwrap().into_dimensionality().unwrap();
        let head = o.pop().unwrap().into_dimensionality().unwrap();
        (o.pop().unwrap().into_dimensionality().unwrap(), head, bg)
    }
    fn embed(&mut self, x: &Array2<f32>) -> (Array3<f32>, Array3<f32>) {
        let mut o = trun(&self.0[2], vec![x.clone().into_dyn()]);
        let bg = o.pop().unwrap().into_dimensionality().unwrap();
        (o.pop().unwrap().into_dimensionality().unwrap(), bg)
    }
    fn backbone(&mut self, tok: &Array3<f32>, m: &Array3<f32>) -> Array3<f32> {
        trun(
            &self.0[3],
            vec![tok.clone().into_dyn(), m.clone().into_dyn()],
        )
        .remove(0)
        .into_dimensionality()
        .unwrap()
    }
    fn heads(&mut self, tok: &Array3<f32>, bg: &Array3<f32>, m: &Mods) -> Array2<f32> {
        trun(
            &self.0[4],
            vec![
                tok.clone().into_dyn(),
                bg.clone().into_dyn(),
                m.1.clone().into_dyn(),
                m.2.clone().into_dyn(),
            ],
        )
        .remove(0)
        .into_dimensionality()
        .unwrap()
    }
}

/// Guided velocity with per-row slides and times (the fixture's layout).
fn velocity(
    e: &mut dyn Engine,
    x: &Array2<f32>,
    t: &Array1<f32>,
    s: &Array2<f32>,
    null: &Array2<f32>,
    cfg: Option<f32>,
) -> Array2<f32> {
    let (tok, bg) = e.embed(x);
    let mc = e.modulation(t, s);
    let to = e.backbone(&tok, &mc.0);
    let vc = e.heads(&to, &bg, &mc);
    let Some(cfg) = cfg else { return vc };
    let nb = concatenate(Axis(0), &vec![null.view(); x.nrows()]).unwrap();
    let mu = e.modulation(t, &nb);
    let tu = e.backbone(&tok, &mu.0);
    let vu = e.heads(&tu, &bg, &mu);
    &vu + &((&vc - &vu) * cfg)
}

fn check(e: &mut dyn Engine, g: &Graphs, engine: &str) {
    let x = npy("x.npy").into_dimensionality::<Ix2>().unwrap();
    let t = npy("t.npy").into_dimensionality::<Ix1>().unwrap();
    let y = npy("y.npy").into_dimensionality::<Ix3>().unwrap();
    let null =
        Array2::from_shape_vec((1, g.null_slide_emb.len()), g.null_slide_emb.clone()).unwrap();
    let s = e.condition(&y);
    let vc = velocity(e, &x, &t, &s, &null, None);
    let d = max_diff(&vc, &npy("v_cond.npy").into_dimensionality().unwrap());
    eprintln!("{engine}: v_cond max|diff| {d:e}");
    assert!(d <= 1e-4, "{engine}: v_cond max|diff| {d}");
    let vg = velocity(e, &x, &t, &s, &null, Some(2.0));
    let d = max_diff(&vg, &npy("v_cfg.npy").into_dimensionality().unwrap());
    eprintln!("{engine}: v_cfg max|diff| {d:e}");
    assert!(d <= 1e-4, "{engine}: v_cfg max|diff| {d}");
    // The official 20-point Euler runs, guided (s = 2) and unguided, on the runtime's grid.
    for (cfg, want) in [(Some(2.0), "sample.npy"), (None, "sample_nocfg.npy")] {
        let mut state = npy("z.npy").into_dimensionality::<Ix2>().unwrap();
        for w in rnafm_runtime::sampler::time_grid(20).windows(2) {
            let tv = Array1::from_elem(state.nrows(), w[0]);
            let v = velocity(e, &state, &tv, &s, &null, cfg);
            state.scaled_add(w[1] - w[0], &v);
        }
        let d = max_diff(&state, &npy(want).into_dimensionality().unwrap());
        eprintln!("{engine}: {want} max|diff| {d:e}");
        assert!(d <= 1e-3, "{engine}: {want} max|diff| {d}");
    }
}

#[test]
fn onnx_runtime_reproduces_official_velocities_and_sample() {
    let (_, g) = export_as(false);
    let mut f = SessionFactory::new(SessionOptions {
        device: DeviceChoice::Cpu,
        threads: 1,
    })
    .unwrap();
    let m = g.members();
    let s = m.map(|(n, b)| f.session(b, n).unwrap());
    check(&mut Ort(s), &g, "ort");
}

#[test]
fn tract_reproduces_official_velocities_and_sample() {
    // tract has no com.microsoft operators: it runs the standard-ONNX form of the graphs.
    let (_, g) = export_as(true);
    let s = g.members().map(|(_, b)| tract_plan(b));
    check(&mut Tract(s), &g, "tract");
}
