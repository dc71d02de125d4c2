//! `workflows/Snakefile` end to end with Snakemake (PyPI, in `.venv`) and the local profile
//! (2 cores): two copies
//! of the real Aperio test slide → rnafm-features (.h5) → rnafm-run → the cohort table; a
//! rerun is a no-op; a lost output is redone alone; features given as files skip the
//! features step.

#![cfg(feature = "hdf5")]

mod common;
#[allow(dead_code)]
mod slide_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use slide_support::{test_slide, tiny_encoder};

const P: usize = 2;
const H: usize = 4;
const K: usize = 3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn snakemake() -> Option<PathBuf> {
    let s = root().join(".venv/bin/snakemake");
    if s.exists() {
        Some(s)
    } else {
        common::missing_from_venv("snakemake")
    }
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn snakemake_runs_the_cohort_and_reruns_as_a_no_op() {
    let Some(slide) = test_slide() else { return };
    let Some(smk) = snakemake() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let slides = dir.join("slides");
    std::fs::create_dir_all(&slides).unwrap();
    for name in ["A.svs", "B.svs"] {
        std::fs::copy(&slide, slides.join(name)).unwrap();
    }
    std::fs::write(dir.join("enc.onnx"), tiny_encoder(H)).unwrap();
    common::write_toy_model_dir(&dir.join("model"), P, H, K);
    let bin = Path::new(env!("CARGO_BIN_EXE_rnafm-run")).parent().unwrap();
    let out = dir.join("out");
    let config = |input: &str, out: &Path| -> Vec<String> {
        vec![
            "--config".into(),
            input.into(),
            format!("encoder={}", dir.join("enc.onnx").display()),
            format!("model={}", dir.join("model").display()),
            format!("out={}", out.display()),
            format!("bin={}", bin.display()),
            "samples=6".into(),
            "threads=1".into(),
            "device=cpu".into(),
            "features_args=--max-tiles 40".into(),
        ]
    };
    let slides_cfg = format!("slides={}", slides.display());
    let run = |cfg: &[String]| -> Output {
        let mut c = Command::new(&smk);
        c.current_dir(dir)
            .args(["-s", root().join("workflows/Snakefile").to_str().unwrap()])
            .args([
                "--profile",
                root().join("workflows/profiles/local").to_str().unwrap(),
            ])
            .args(cfg);
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            c.env("ORT_DYLIB_PATH", root().join(".ort/libonnxruntime.so"));
        }
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "snakemake failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let log = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let jobs = |o: &Output, rule: &str| log(o).matches(&format!("rule {rule}:")).count();

    let first = run(&config(&slides_cfg, &out));
    assert_eq!(
        (
            jobs(&first, "features"),
            jobs(&first, "run"),
            jobs(&first, "cohort")
        ),
        (2, 2, 1),
        "{}",
        log(&first)
    );
    let table = std::fs::read_to_string(out.join("cohort.mean.tsv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "gene\tA\tB");
    assert_eq!(lines.len(), 1 + P * H);
    // Two copies of one slide, same seed: the same predictions, and they are the run's.
    let genes = std::fs::read_to_string(out.join("predictions/A/A.genes.tsv")).unwrap();
    for (row, g) in lines[1..].iter().zip(genes.lines().skip(1)) {
        let f: Vec<&str> = row.split('\t').collect();
        let m: Vec<&str> = g.split('\t').collect();
        assert_eq!((f[0], f[1], f[2]), (m[0], m[1], m[1]));
    }
    let tiles = rnafm_runtime::features::read_h5_tiles(&out.join("features/A.h5")).unwrap();
    assert_eq!(tiles.features.ncols(), H);
    assert!(tiles.coords.is_some() && tiles.features.nrows() <= 40);

    // Rerun: nothing to do, nothing rewritten.
    let before = mtime(&out.join("cohort.mean.tsv"));
    let again = run(&config(&slides_cfg, &out));
    assert!(
        log(&again).contains("Nothing to be done"),
        "{}",
        log(&again)
    );
    assert_eq!(mtime(&out.join("cohort.mean.tsv")), before);

    // A lost prediction (and the table made of it) is redone alone: the features and the
    // other slide stay. (Snakemake does not redo a missing intermediate file while what was
    // made from it is present and newer.)
    let a_genes = mtime(&out.join("predictions/A/A.genes.tsv"));
    std::fs::remove_file(out.join("predictions/B/B.genes.tsv")).unwrap();
    std::fs::remove_file(out.join("cohort.mean.tsv")).unwrap();
    let redo = run(&config(&slides_cfg, &out));
    assert_eq!(
        (
            jobs(&redo, "features"),
            jobs(&redo, "run"),
            jobs(&redo, "cohort")
        ),
        (0, 1, 1),
        "{}",
        log(&redo)
    );
    assert_eq!(mtime(&out.join("predictions/A/A.genes.tsv")), a_genes);
    assert_eq!(
        std::fs::read_to_string(out.join("cohort.mean.tsv")).unwrap(),
        table
    );

    // The Slurm profile, planned without a cluster (a dry run through the executor plugin):
    // one job per slide and step with the rules' resources.
    let mut c = Command::new(&smk);
    c.current_dir(dir)
        .args(["-s", root().join("workflows/Snakefile").to_str().unwrap()])
        .args([
            "--profile",
            root().join("workflows/profiles/slurm").to_str().unwrap(),
        ])
        .arg("-n")
        .args(config(&slides_cfg, &dir.join("planned")));
    let plan = c.output().unwrap();
    let text = log(&plan);
    assert!(plan.status.success(), "{text}");
    assert_eq!(jobs(&plan, "features"), 2, "{text}");
    assert_eq!(jobs(&plan, "run"), 2, "{text}");
    assert!(
        text.contains("slurm_partition=cpu") && text.contains("mem_mb=3000"),
        "{text}"
    );
    assert!(!dir.join("planned").exists());

    // The plain-Slurm array script, run as array tasks 0 and 1 of 2 would be (the variables
    // sbatch sets): each task predicts its half of the slides, together all of them, over
    // the model's genes.
    let array = dir.join("array");
    for task in ["0", "1"] {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new(root().join("workflows/slurm-array.sh"))
            .arg(out.join("features"))
            .arg(dir.join("model"))
            .arg(&array)
            .env("SLURM_ARRAY_TASK_ID", task)
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for (task, slide) in [("0", "A"), ("1", "B")] {
        let shard = array.join(format!("shard-{task}"));
        let genes = std::fs::read_to_string(shard.join(format!("{slide}.genes.tsv"))).unwrap();
        let other = if slide == "A" { "B" } else { "A" };
        assert!(!shard.join(format!("{other}.genes.tsv")).exists());
        let made =
            std::fs::read_to_string(out.join(format!("predictions/{slide}/{slide}.genes.tsv")));
        // the workflow ran 6 draws, the array script the default 100: the same genes
        let names = |t: &str| {
            t.lines()
                .map(|l| l.split('\t').next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&genes), names(&made.unwrap()));
    }

    // Tile files given directly (here the .h5 just written): no features step, same table.
    let feats_cfg = format!("features={}", out.join("features").display());
    let direct = dir.join("direct");
    let o = run(&config(&feats_cfg, &direct));
    assert_eq!(jobs(&o, "features"), 0, "{}", log(&o));
    assert_eq!(
        std::fs::read_to_string(direct.join("cohort.mean.tsv")).unwrap(),
        table
    );
}
