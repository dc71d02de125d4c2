//! The names of a model bundle's members: the one definition that the exporter writes and
//! `rnafm-run` reads (a `.rnafm` zip, or the same files unpacked in a folder).

/// The model's metadata (genes, pathways, normalisation, defaults, hashes of the others).
pub const MANIFEST: &str = "manifest.json";
/// The graphs of the runtime contract: the slide encoder + time embedding, every adaLN
/// modulation per slide, and the per-step embedding, DiT backbone and per-pathway heads.
pub const CONDITION: &str = "condition.onnx";
pub const MODULATION: &str = "modulation.onnx";
pub const EMBED: &str = "embed.onnx";
pub const BACKBONE: &str = "backbone.onnx";
pub const HEADS: &str = "heads.onnx";
/// The null condition's slide embedding [1, H] (unconditional branch of guidance).
pub const NULL_SLIDE_EMB: &str = "null_slide_emb.npy";
/// What a model folder holds besides its manifest, in the order read and hashed.
pub const FOLDER_MEMBERS: [&str; 6] = [
    CONDITION,
    MODULATION,
    EMBED,
    BACKBONE,
    HEADS,
    NULL_SLIDE_EMB,
];
/// The inputs each graph takes, by name: what the sampler feeds it. A member whose graph
/// has other inputs is not that graph (a damaged or altered bundle).
pub const GRAPH_INPUTS: [(&str, &[&str]); 5] = [
    (CONDITION, &["features"]),
    (MODULATION, &["t", "slide_emb"]),
    (EMBED, &["x"]),
    (BACKBONE, &["tokens", "block_mod"]),
    (HEADS, &["tokens_out", "bg_token", "head_mod", "bg_mod"]),
];
/// Optional int8 variant of the backbone (`rnafm-export --int8`). Bundles exported before
/// the pathway graph block moved into the backbone also hold an `embed.int8.onnx`; it is
/// not read.
pub const BACKBONE_INT8: &str = "backbone.int8.onnx";
/// Optional files of an unpacked model folder: training-feature statistics [2, D] (mean row,
/// sd row) and per-gene cross-validated r [G] (or [1, G]).
pub const FEATURE_STATS: &str = "feature_stats.npy";
pub const CV_R: &str = "cv_r.npy";
/// Most models a fold ensemble may hold (a bundle of k-fold models has k).
pub const MAX_ENSEMBLE: usize = 32;

/// The bundle member holding `name` for model `model` of a fold ensemble: model 0's members
/// sit at the top (so a one-model bundle is unchanged), model k's under `ensemble/k/`.
pub fn ensemble_member(model: usize, name: &str) -> String {
    if model == 0 {
        name.to_string()
    } else {
        format!("ensemble/{model}/{name}")
    }
}
