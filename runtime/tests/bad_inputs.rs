//! Bad inputs to `rnafm-run`, as a careless or hostile user gives them: each is one line
//! that names the file or the option, a non-zero exit, no output files for that slide, and
//! no large allocation (each case below would have asked for gigabytes or terabytes before
//! the size checks; they finish in well under a second now). Features that overflow the
//! real network are checked on a real bundle in `exporter/tests/bundle_export.rs`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;

const P: usize = 2;
const H: usize = 4;
const K: usize = 3;

fn bin() -> Command {
    common::rnafm_run()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A toy model, a good slide `good.npy`, and an output folder.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        common::write_toy_model_dir(&root.join("model"), P, H, K);
        let good = Array2::from_shape_fn((K, H), |(k, d)| (k as f32 - d as f32) * 0.3);
        rnafm_runtime::npy::write_npy(&root.join("good.npy"), &good).unwrap();
        Setup { _tmp: tmp, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `rnafm-run good.npy --model MODEL --out OUT`, to add to.
    fn good_run(&self, model: &Path, out: &str) -> Command {
        let mut c = bin();
        c.arg(self.path("good.npy"))
            .arg("--model")
            .arg(model)
            .arg("--out")
            .arg(self.path(out));
        c
    }

    /// `rnafm-run good.npy BAD --model … --out out` plus `extra`.
    fn run_with_good(&self, bad: &Path, extra: &[&str]) -> Output {
        self.good_run(&self.path("model"), "out")
            .arg(bad)
            .args(["--samples", "4", "--steps", "4", "--quiet"])
            .args(extra)
            .output()
            .unwrap()
    }
}

/// The largest peak resident memory of any child process this test binary has waited for,
/// in bytes (Linux reports KiB).
#[cfg(unix)]
fn max_child_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as u64 * 1024
}

/// A run that must stay small: under 1 GiB of memory (its peak, or any earlier child's) and
/// a few seconds.
fn bounded(s: &Setup, bad: &Path, extra: &[&str]) -> Output {
    let t = std::time::Instant::now();
    let o = s.run_with_good(bad, extra);
    let secs = t.elapsed().as_secs_f64();
    assert!(secs < 20.0, "{}: {secs:.1} s", bad.display());
    #[cfg(unix)]
    assert!(
        max_child_rss() < 1 << 30,
        "{}: peak memory {} MiB",
        bad.display(),
        max_child_rss() >> 20
    );
    o
}

/// A `.npy` header (version 1) for float32 data of `shape`, padded as NumPy pads it.
fn npy_header(shape: &str) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let mut h = dict.into_bytes();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    out
}

/// An `.npz` with one deflated member `features.npy` holding `bytes`.
fn npz(path: &Path, bytes: impl FnOnce(&mut dyn Write)) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("features.npy", opts).unwrap();
    bytes(&mut zip);
    zip.finish().unwrap();
}

/// The bad slide failed on one line naming it, the good one ran, and the bad one left no
/// output file.
fn only_the_bad_slide_failed(s: &Setup, o: &Output, bad_stem: &str, says: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(&format!("{bad_stem}.")))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(says), "{err}");
    assert!(s.path("out/good.genes.tsv").is_file());
    let left: Vec<_> = std::fs::read_dir(s.path("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(bad_stem))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_header_claiming_a_huge_shape_is_refused_without_allocating() {
    let s = Setup::new();
    let bad = s.path("huge.npy");
    std::fs::write(&bad, npy_header("(1000000000000, 4)")).unwrap();
    let o = bounded(&s, &bad, &[]);
    only_the_bad_slide_failed(&s, &o, "huge", "larger than");
    // within the limits, but the data is not there
    std::fs::write(&bad, npy_header("(1000, 4)")).unwrap();
    let o = bounded(&s, &bad, &["--overwrite"]);
    only_the_bad_slide_failed(&s, &o, "huge", "truncated");
}

#[test]
fn compressed_bombs_are_refused_before_they_inflate() {
    let s = Setup::new();
    // header claims 16.7 M tiles × 32: more than the values one slide may hold
    let bomb = s.path("bomb.npz");
    npz(&bomb, |w| {
        w.write_all(&npy_header("(16777216, 32)")).unwrap()
    });
    let o = bounded(&s, &bomb, &[]);
    only_the_bad_slide_failed(&s, &o, "bomb", "larger than");
    // header says 3×4 but the member inflates to 64 MiB: stopped after the declared bytes
    let liar = s.path("liar.npz");
    npz(&liar, |w| {
        w.write_all(&npy_header("(3, 4)")).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            w.write_all(&zeros).unwrap();
        }
    });
    let o = bounded(&s, &liar, &["--overwrite"]);
    only_the_bad_slide_failed(&s, &o, "liar", "more data than");
}

/// Settings that would allocate terabytes, spawn a hundred thousand threads or give NaN
/// tables are usage errors (exit 2) naming the option, with the limit in --help.
#[test]
fn out_of_range_settings_are_usage_errors() {
    let s = Setup::new();
    for (flag, value) in [
        ("--samples", "4294967295"),
        ("--samples", "0"),
        ("--samples", "-1"),
        ("--steps", "-3"),
        ("--batch", "4294967295"),
        ("--threads", "100000"),
        ("--cfg", "NaN"),
        ("--cfg", "inf"),
        ("--cfg=-inf", ""),
    ] {
        let o = s
            .good_run(&s.path("model"), "out")
            .arg(flag)
            .args((!value.is_empty()).then_some(value))
            .output()
            .unwrap();
        let err = stderr(&o);
        let name = flag.split('=').next().unwrap_or(flag);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(name), "{flag} {value}: {err}");
        assert!(!s.path("out").exists(), "{flag} {value} wrote outputs");
    }
    let help = String::from_utf8_lossy(&bin().arg("--help").output().unwrap().stdout).into_owned();
    assert!(
        help.contains("10,000") && help.contains("at most 256"),
        "{help}"
    );
}

/// A re-run into the same --out with settings that change the numbers would skip the
/// finished slides and then describe them wrongly in run.json: refused (exit 2, naming
/// run.json and --overwrite), files untouched; the same settings skip; --overwrite redoes.
#[test]
fn a_rerun_with_other_settings_is_refused_not_mixed() {
    let s = Setup::new();
    let run = |extra: &[&str]| {
        s.good_run(&s.path("model"), "out")
            .args(["--steps", "4", "--quiet"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--samples", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let genes = std::fs::read(s.path("out/good.genes.tsv")).unwrap();
    let report = std::fs::read(s.path("out/run.json")).unwrap();
    for other in [&["--samples", "5"][..], &["--samples", "4", "--seed", "3"]] {
        let o = run(other);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{other:?}: {err}");
        assert!(
            err.contains("run.json") && err.contains("--overwrite"),
            "{err}"
        );
        assert_eq!(
            err.lines().filter(|l| l.contains("run.json")).count(),
            1,
            "{err}"
        );
        assert_eq!(std::fs::read(s.path("out/good.genes.tsv")).unwrap(), genes);
        assert_eq!(std::fs::read(s.path("out/run.json")).unwrap(), report);
    }
    // the same settings (another batch size and thread count change nothing): skipped
    let o = run(&["--samples", "4", "--batch", "2", "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("skipped"));
    let o = run(&["--samples", "5", "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("out/run.json")).unwrap()).unwrap();
    assert_eq!(r["samples"], 5);
}

/// A temporary file that a killed run left in --out is removed by the next run.
#[test]
fn temporary_files_of_a_killed_run_are_cleaned_up() {
    let s = Setup::new();
    std::fs::create_dir_all(s.path("out")).unwrap();
    // (no process has this PID: Linux caps PIDs at 2^22)
    let stale = s.path("out/.rnafm-4000000000-x1y2.tmp");
    std::fs::write(&stale, b"").unwrap();
    let o = s
        .good_run(&s.path("model"), "out")
        .args(["--samples", "2", "--steps", "3", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale.exists());
    let left: Vec<_> = std::fs::read_dir(s.path("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// An output name the file system cannot hold (here `.genes.tsv` fits in 255 bytes but
/// `.pathways.tsv` does not) fails the slide on one line and leaves none of its files.
#[test]
fn a_slide_whose_outputs_cannot_all_be_written_leaves_none() {
    let s = Setup::new();
    let stem = "x".repeat(244);
    let long = s.path(&format!("{stem}.npy"));
    std::fs::copy(s.path("good.npy"), &long).unwrap();
    let o = s.run_with_good(&long, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains(&stem)).count(),
        1,
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(s.path("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("xxxx") || n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(s.path("out/good.genes.tsv").is_file());
}

/// An --out that cannot be a folder is one line, before any slide runs.
#[test]
fn an_unusable_out_folder_is_one_line() {
    let s = Setup::new();
    std::fs::write(s.path("file"), b"x").unwrap();
    let o = s
        .good_run(&s.path("model"), "file/out")
        .args(["--samples", "2", "--steps", "3", "--quiet"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("file/out")).count(),
        1,
        "{err}"
    );
}

/// A model whose graphs are valid ONNX but in the wrong places (two members swapped) is
/// refused once, at load, naming the model and the member, not once per slide.
#[test]
fn swapped_graphs_are_blamed_on_the_model_once() {
    let s = Setup::new();
    let model = s.path("model");
    let embed = std::fs::read(model.join("embed.onnx")).unwrap();
    let backbone = std::fs::read(model.join("backbone.onnx")).unwrap();
    std::fs::write(model.join("embed.onnx"), backbone).unwrap();
    std::fs::write(model.join("backbone.onnx"), embed).unwrap();
    let other = s.path("other.npy");
    std::fs::copy(s.path("good.npy"), &other).unwrap();
    let o = s.run_with_good(&other, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The members are checked in parallel, so either of the two may be named first.
    assert!(
        err.contains("model")
            && (err.contains("embed.onnx is not the embed graph")
                || err.contains("backbone.onnx is not the backbone graph")),
        "{err}"
    );
    assert!(!s.path("out").exists());
}

/// The corpus: bad inputs of every kind, each with the exit code, the one line that names
/// the file or option, and nothing written for it. Slide files run beside a good slide
/// (which must still succeed); usage and model mistakes stop the run before any output.
#[test]
fn corpus_of_bad_inputs() {
    use ndarray::{Array1, Array3};
    let s = Setup::new();
    let w = |name: &str, bytes: &[u8]| {
        let p = s.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let npy = |name: &str, a: Array2<f32>| {
        let p = s.path(name);
        rnafm_runtime::npy::write_npy(&p, &a).unwrap();
        p
    };
    let npy_bytes = |a: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        a(&mut v);
        v
    };
    use ndarray_npy::WriteNpyExt;
    let good = Array2::from_shape_fn((K, H), |(k, d)| (k as f32 - d as f32) * 0.3);
    let mut with_nan = good.clone();
    with_nan[[1, 2]] = f32::NAN;
    let mut with_inf = good.clone();
    with_inf[[0, 0]] = f32::INFINITY;
    let full = npy_bytes(&|v| good.write_npy(v).unwrap());
    // (file, what its one line must say)
    let slides: Vec<(PathBuf, &str)> = vec![
        (w("empty.npy", b""), "not a readable .npy"),
        (
            w("text.npy", b"hello, I am not an array\n"),
            "not a readable .npy",
        ),
        (
            w(
                "ints.npy",
                &npy_bytes(&|v| Array2::<i64>::zeros((K, H)).write_npy(v).unwrap()),
            ),
            "not float32 or float64",
        ),
        (
            w(
                "rank1.npy",
                &npy_bytes(&|v| Array1::<f32>::zeros(H).write_npy(v).unwrap()),
            ),
            "2-d",
        ),
        (
            w(
                "rank3.npy",
                &npy_bytes(&|v| Array3::<f32>::zeros((1, K, H)).write_npy(v).unwrap()),
            ),
            "2-d",
        ),
        (npy("zero_rows.npy", Array2::zeros((0, H))), "zero rows"),
        (npy("wide.npy", Array2::zeros((K, H + 1))), "dimensional"),
        (npy("nan.npy", with_nan), "non-finite"),
        (npy("inf.npy", with_inf), "non-finite"),
        (
            w(
                "f64_overflow.npy",
                &npy_bytes(&|v| {
                    Array2::<f64>::from_elem((K, H), 1e300)
                        .write_npy(v)
                        .unwrap()
                }),
            ),
            "non-finite",
        ),
        (npy("few.npy", Array2::zeros((K - 1, H))), "fewer than"),
        (w("cut.npy", &full[..full.len() - 4]), "truncated"),
        (
            w("long.npy", &[&full[..], &[0u8; 8][..]].concat()),
            "more data than",
        ),
        (s.path("absent.npy"), "No such file"),
    ];
    // npz archives: several arrays none named features; empty; a member that is not .npy
    let npz_with = |name: &str, members: &[(&str, &[u8])]| {
        let p = s.path(name);
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        for (m, bytes) in members {
            z.start_file(*m, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
        p
    };
    let slides: Vec<(PathBuf, &str)> = slides
        .into_iter()
        .chain([
            (
                npz_with("two.npz", &[("a.npy", &full), ("b.npy", &full)]),
                "none is named",
            ),
            (npz_with("hollow.npz", &[]), "holds no array"),
            (
                npz_with("junk.npz", &[("features.npy", b"junk")]),
                "not a readable .npy",
            ),
        ])
        .collect();
    for (bad, says) in &slides {
        let stem = bad.file_stem().unwrap().to_string_lossy().into_owned();
        let o = s.run_with_good(bad, &["--overwrite"]);
        only_the_bad_slide_failed(&s, &o, &stem, says);
    }

    // Usage mistakes: exit 2 naming the option or input, nothing written.
    std::fs::create_dir_all(s.path("no_arrays")).unwrap();
    let svs = w("slide.svs", b"II*\0");
    let model = s.path("model");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec!["--steps".into(), "1".into()], "--steps"),
        (vec!["--batch".into(), "0".into()], "--batch"),
        (vec!["--shard".into(), "2/2".into()], "--shard"),
        (vec!["--shard".into(), "0/0".into()], "--shard"),
        (vec!["--shard".into(), "x".into()], "--shard"),
        (vec!["--device".into(), "tpu".into()], "--device"),
        (vec!["--precision".into(), "fp16".into()], "--precision"),
        (vec![s.path("no_arrays").into()], "no .npy/.npz"),
        (vec![svs.clone().into()], "--encoder"),
    ];
    for (extra, says) in &cases {
        let o = s
            .good_run(&model, "usage_out")
            .args(extra)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(!s.path("usage_out").exists(), "{extra:?} wrote outputs");
    }
    let o = bin().arg("--model").arg(&model).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "no slides: {}", stderr(&o));

    // Model mistakes: one line naming the model, before any slide runs.
    let garbage = w("garbage.rnafm", b"PK\x03\x04 not really a zip");
    let no_manifest = s.path("no_manifest.rnafm");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&no_manifest).unwrap());
        z.start_file("heads.onnx", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"x").unwrap();
        z.finish().unwrap();
    }
    let hollow_model = s.path("hollow_model");
    common::write_toy_model_dir(&hollow_model, P, H, K);
    std::fs::remove_file(hollow_model.join("null_slide_emb.npy")).unwrap();
    let models: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (s.path("absent.rnafm"), vec![], "absent.rnafm"),
        (garbage, vec![], "garbage.rnafm"),
        (no_manifest, vec![], "manifest.json"),
        (hollow_model, vec![], "null_slide_emb.npy"),
        (model.clone(), vec!["--precision", "int8"], "int8"),
    ];
    for (m, extra, says) in &models {
        let o = s.good_run(m, "model_out").args(extra).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", m.display());
        assert_eq!(err.trim().lines().count(), 1, "{}: {err}", m.display());
        assert!(err.contains(says), "{}: {err}", m.display());
        assert!(
            !s.path("model_out").exists(),
            "{} wrote outputs",
            m.display()
        );
    }
}
