//! Paper-config export check (ignored by default; `scripts/bench-export` runs it): random
//! weights at 380 GO-MF pathways / 20,820 genes / hidden 256 / depth 7 / 100×1024 clusters.
//! Checks export time, bundle size against the float32 weights, and ONNX Runtime against
//! tract (on the standard-ONNX form of the graphs) on one velocity evaluation.

use std::path::Path;
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayD, Axis};
use ort::value::TensorRef;
use rnafm_exporter::bundle_export::{ExportInfo, bundle};
use rnafm_exporter::graphs;
use rnafm_exporter::random_weights::random_official;
use rnafm_runtime::genes::GeneList;
use rnafm_runtime::model_config::ModelConfig;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::ort_env::{DeviceChoice, SessionFactory, SessionOptions};
use rnafm_runtime::pathways::PathwaySet;
use rnafm_runtime::sampler::noise;
use tract_onnx::prelude::*;

fn tract_run(bytes: &[u8], inputs: Vec<ArrayD<f32>>) -> Vec<ArrayD<f32>> {
    let m = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    m.run(inputs.into_iter().map(|a| a.into_tensor().into()).collect())
        .unwrap()
        .iter()
        .map(|t| t.to_plain_array_view::<f32>().unwrap().to_owned())
        .collect()
}

#[test]
#[ignore = "paper-size export (~1 GB RAM, minutes); run by scripts/bench-export"]
fn paper_config_export_time_size_and_engine_agreement() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/reference-cohorts");
    let gl = GeneList::read(&data.join("gene_list.csv")).unwrap();
    let ps = PathwaySet::read(
        &data.join("all_gene_indices_molecular_function.json"),
        Some(&gl),
        gl.len(),
    )
    .unwrap();
    let spec = ModelSpec {
        config: ModelConfig::paper(gl.len(), 100, 1024),
        genes: gl.symbols().to_vec(),
        pathways: ps,
        normalization: None,
    };
    let memberships: usize = spec.pathways.sizes().iter().sum();
    eprintln!(
        "paper config: {} pathways, {} memberships, {} genes",
        spec.pathways.len(),
        memberships,
        spec.config.genes
    );
    let w = random_official(&spec, 1);
    let origin = Path::new("random");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("paper.rnafm");
    let start = Instant::now();
    let mut g = graphs::build(&spec, &w, origin, |_| {}).unwrap();
    let built = start.elapsed().as_secs_f64();
    bundle(&spec, &g, &ExportInfo::default(), origin)
        .unwrap()
        .write(&out)
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(&out).unwrap().len() as f64;
    // scripts/bench-run keeps the bundle to time rnafm-run on it, with the int8 graphs of
    // `rnafm-export --int8` added.
    if let Some(keep) = std::env::var_os("RNAFM_KEEP_BUNDLE") {
        g.add_int8(&spec, &w, origin).unwrap();
        bundle(&spec, &g, &ExportInfo::default(), origin)
            .unwrap()
            .write(Path::new(&keep))
            .unwrap();
    }
    let weights = w.total_params() as f64 * 4.0;
    eprintln!(
        "export: graphs {built:.1}s, total with self-test and write {secs:.1}s; bundle {:.1} MB = {:.3} × float32 weights ({:.1} MB)",
        size / 1e6,
        size / weights,
        weights / 1e6
    );
    assert!(secs < 60.0, "export took {secs:.1}s");
    assert!(
        size <= weights * 1.10,
        "bundle {size} B > 1.1 × weights {weights} B"
    );

    // One guided-branch velocity on both engines.
    let (b, gn, h) = (2, spec.config.genes, spec.config.hidden);
    let x = noise(3, 0, b, gn);
    let t = Array1::from_vec(vec![0.25f32, 0.75]);
    let s = noise(4, 0, b, h);
    let mut f = SessionFactory::new(SessionOptions {
        device: DeviceChoice::Cpu,
        threads: 0,
    })
    .unwrap();
    let [_, m, e, bb, hh] = g.members();
    let mut md = f.session(m.1, m.0).unwrap();
    let mut emb = f.session(e.1, e.0).unwrap();
    let mut bk = f.session(bb.1, bb.0).unwrap();
    let mut hd = f.session(hh.1, hh.0).unwrap();
    // The modulations are per slide (once for all steps), outside the per-step time.
    let o = md
        .run(ort::inputs![
            "t" => TensorRef::from_array_view(&t).unwrap(),
            "slide_emb" => TensorRef::from_array_view(&s).unwrap()
        ])
        .unwrap();
    let get = |n: &str| o[n].try_extract_array::<f32>().unwrap().to_owned();
    let (block_mod, head_mod, bg_mod) = (get("block_mod"), get("head_mod"), get("bg_mod"));
    drop(o);
    let t0 = Instant::now();
    let o = emb
        .run(ort::inputs!["x" => TensorRef::from_array_view(&x).unwrap()])
        .unwrap();
    let tok = o["tokens"].try_extract_array::<f32>().unwrap().to_owned();
    let bg = o["bg_token"].try_extract_array::<f32>().unwrap().to_owned();
    drop(o);
    let o = bk
        .run(ort::inputs![
            "tokens" => TensorRef::from_array_view(&tok).unwrap(),
            "block_mod" => TensorRef::from_array_view(&block_mod).unwrap()
        ])
        .unwrap();
    let to = o["tokens_out"]
        .try_extract_array::<f32>()
        .unwrap()
        .to_owned();
    drop(o);
    let o = hd
        .run(ort::inputs![
            "tokens_out" => TensorRef::from_array_view(&to).unwrap(),
            "bg_token" => TensorRef::from_array_view(&bg).unwrap(),
            "head_mod" => TensorRef::from_array_view(&head_mod).unwrap(),
            "bg_mod" => TensorRef::from_array_view(&bg_mod).unwrap()
        ])
        .unwrap();
    let v_ort = o["v"].try_extract_array::<f32>().unwrap().to_owned();
    drop(o);
    eprintln!(
        "ort velocity (batch {b}): {:.3}s",
        t0.elapsed().as_secs_f64()
    );

    // tract has no com.microsoft operators: it runs the standard-ONNX form of the graphs.
    drop((md, emb, bk, hd));
    let portable = graphs::build_portable(&spec, &w, origin).unwrap();
    let [_, m, e, bb, hh] = portable.members();
    let tm = tract_run(m.1, vec![t.clone().into_dyn(), s.clone().into_dyn()]);
    let te = tract_run(e.1, vec![x.clone().into_dyn()]);
    let tb = tract_run(bb.1, vec![te[0].clone(), tm[0].clone()]);
    let v_tr = tract_run(
        hh.1,
        vec![tb[0].clone(), te[1].clone(), tm[1].clone(), tm[2].clone()],
    )
    .remove(0);
    let v_ort: Array2<f32> = v_ort.into_dimensionality().unwrap();
    let v_tr: Array2<f32> = v_tr.into_dimensionality().unwrap();
    let scale = v_tr.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = (&v_ort - &v_tr).iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("ORT vs tract velocity max|diff| {d:e} (max|v| {scale:.3})");
    assert!(v_ort.sum_axis(Axis(1)).iter().all(|v| v.is_finite()));
    assert!(scale > 0.0);
    assert!(d <= 1e-3 * scale.max(1.0), "ORT vs tract max|diff| {d}");
}
