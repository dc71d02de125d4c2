//! How a slide's name (the reference CSV's `wsi_file_name`, e.g. `TCGA-05-4244-01Z.svs` in
//! every GDC manifest) maps to the files the tools write and read: features
//! `<stem>.npy` (what `rnafm-features X.svs --out feats/X.npy` gives), `rnafm-run` outputs
//! `<stem>.genes.tsv` / `<stem>.samples.npy`. The stem is the name without a whole-slide
//! image extension; lookups accept the full name too, so older files are still found.

use std::path::{Path, PathBuf};

/// Extensions of whole-slide image files that a slide name may carry (case-insensitive).
pub const WSI_NAME_EXTENSIONS: [&str; 8] =
    ["svs", "tif", "tiff", "ndpi", "mrxs", "scn", "bif", "vms"];

/// `name` without a whole-slide image extension (`X.svs` → `X`; `X.npy` stays).
pub fn slide_stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && WSI_NAME_EXTENSIONS
                    .iter()
                    .any(|e| ext.eq_ignore_ascii_case(e)) =>
        {
            stem
        }
        _ => name,
    }
}

/// The output name of an input file of `rnafm-run`: its file name without the extension,
/// then without a whole-slide extension (`X.svs`, `X.npy` and `X.svs.npy` all give `X`).
pub fn output_name(input: &Path) -> String {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "slide".into());
    slide_stem(&stem).to_string()
}

/// The first of `<dir>/<name><suffix>` and `<dir>/<stem><suffix>` that exists.
fn first_existing(dir: &Path, slide: &str, suffixes: &[&str]) -> Option<PathBuf> {
    let mut names = vec![slide];
    if slide_stem(slide) != slide {
        names.push(slide_stem(slide));
    }
    names
        .iter()
        .flat_map(|n| suffixes.iter().map(move |s| dir.join(format!("{n}{s}"))))
        .find(|p| p.is_file())
}

/// A slide's feature file in `dir`: `<slide>` itself, or `<slide or stem>.npy|.npz|.h5`.
pub fn feature_file(dir: &Path, slide: &str) -> Option<PathBuf> {
    first_existing(dir, slide, &["", ".npy", ".npz", ".h5"])
}

/// A slide's draws in an `rnafm-run --save-samples` folder.
pub fn samples_file(dir: &Path, slide: &str) -> Option<PathBuf> {
    first_existing(dir, slide, &[".samples.npy"])
}

/// Where a slide's draws are expected (for messages when they are missing).
pub fn expected_samples_file(dir: &Path, slide: &str) -> PathBuf {
    dir.join(format!("{}.samples.npy", slide_stem(slide)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_drop_only_slide_extensions() {
        assert_eq!(slide_stem("TCGA-05-4244-01Z.svs"), "TCGA-05-4244-01Z");
        assert_eq!(slide_stem("a.b.TIFF"), "a.b");
        assert_eq!(slide_stem("slide.npy"), "slide.npy");
        assert_eq!(slide_stem("plain"), "plain");
        assert_eq!(slide_stem(".svs"), ".svs");
        for p in ["d/X.svs", "d/X.npy", "d/X.svs.npy", "X.npz"] {
            assert_eq!(output_name(Path::new(p)), "X", "{p}");
        }
    }

    /// A GDC name finds what rnafm-features and rnafm-run wrote under its stem, and a file
    /// under the full name wins where both exist.
    #[test]
    fn gdc_names_find_stem_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("X.npy"), b"").unwrap();
        std::fs::write(d.join("X.samples.npy"), b"").unwrap();
        assert_eq!(feature_file(d, "X.svs"), Some(d.join("X.npy")));
        assert_eq!(samples_file(d, "X.svs"), Some(d.join("X.samples.npy")));
        assert_eq!(samples_file(d, "Y.svs"), None);
        assert_eq!(expected_samples_file(d, "Y.svs"), d.join("Y.samples.npy"));
        std::fs::write(d.join("X.svs.npy"), b"").unwrap();
        assert_eq!(feature_file(d, "X.svs"), Some(d.join("X.svs.npy")));
    }
}
