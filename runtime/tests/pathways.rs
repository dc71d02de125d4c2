//! Pathway sets: the JSON index and GMT forms, background handling, the real GO-MF index,
//! and the graph mask against the official fixture.

use std::path::{Path, PathBuf};

use rnafm_runtime::genes::GeneList;
use rnafm_runtime::pathways::PathwaySet;
use rnafm_runtime::weights::WeightMap;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn json(text: &str, n_genes: usize) -> Result<PathwaySet, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pw.json");
    std::fs::write(&p, text).unwrap();
    PathwaySet::read_json(&p, n_genes).map_err(|e| {
        let s = e.to_string();
        assert!(s.contains("pw.json"), "error does not name the file: {s}");
        s
    })
}

fn genes(n: usize) -> GeneList {
    GeneList::new((0..n).map(|i| format!("G{i}")).collect(), Path::new("g")).unwrap()
}

fn gmt(text: &str, g: &GeneList) -> Result<PathwaySet, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sets.gmt");
    std::fs::write(&p, text).unwrap();
    PathwaySet::read_gmt(&p, g).map_err(|e| {
        let s = e.to_string();
        assert!(s.contains("sets.gmt"), "error does not name the file: {s}");
        s
    })
}

#[test]
fn json_background_keys_and_uncovered_genes() {
    let s = json(
        r#"{"p1": [0, 1], "UNMAPPED": [5, 4], "p2": [1, 2], "UNCLASSIFIED": [3, 4]}"#,
        8,
    )
    .unwrap();
    assert_eq!(s.names, ["p1", "p2"]); // file order, background keys excluded
    assert_eq!(s.members, vec![vec![0, 1], vec![1, 2]]);
    // listed background in order (duplicates once), then uncovered genes 6, 7 ascending
    assert_eq!(s.background, vec![5, 4, 3, 6, 7]);
    assert_eq!(s.gene_counts(), vec![1, 2, 1, 1, 1, 1, 1, 1]);
}

#[test]
fn json_index_out_of_range() {
    let e = json(r#"{"p1": [0, 9]}"#, 5).unwrap_err();
    assert!(
        e.contains("\"p1\"") && e.contains("index 9") && e.contains("5 genes"),
        "{e}"
    );
    let e = json(r#"{"p1": [0], "UNMAPPED": [7]}"#, 5).unwrap_err();
    assert!(e.contains("background") && e.contains("7"), "{e}");
}

#[test]
fn json_bad_entries() {
    let e = json(r#"{"p1": []}"#, 5).unwrap_err();
    assert!(e.contains("no known gene"), "{e}");
    let e = json(r#"{"p1": [0, -1]}"#, 5).unwrap_err();
    assert!(e.contains("-1") && e.contains("not a gene index"), "{e}");
    let e = json(r#"{"p1": [0, 0]}"#, 5).unwrap_err();
    assert!(e.contains("listed twice"), "{e}");
    let e = json(r#"["p1"]"#, 5).unwrap_err();
    assert!(e.contains("JSON object"), "{e}");
    let e = json(r#"{"UNMAPPED": [0]}"#, 5).unwrap_err();
    assert!(e.contains("no pathways"), "{e}");
}

#[test]
fn gmt_parse_drops_unknown_symbols_and_reads_weights() {
    let g = genes(6);
    let s = gmt(
        "SET_A\thttp://x\tG0\tG3\tNOPE\tG3\n\nSET_B\t\tG5,1.0\tG1,0.5\n",
        &g,
    )
    .unwrap();
    assert_eq!(s.names, ["SET_A", "SET_B"]);
    assert_eq!(s.members, vec![vec![0, 3], vec![5, 1]]);
    assert_eq!(s.background, vec![2, 4]); // uncovered genes
}

#[test]
fn gmt_errors() {
    let g = genes(4);
    let e = gmt("SET_A\tdesc\tX1\tX2\n", &g).unwrap_err();
    assert!(e.contains("line 1") && e.contains("no known gene"), "{e}");
    let e = gmt("SET_A\tdesc\tG0\nSET_A\tdesc\tG1\n", &g).unwrap_err();
    assert!(e.contains("line 2") && e.contains("twice"), "{e}");
    let e = gmt("SET_A G0 G1\n", &g).unwrap_err();
    assert!(e.contains("line 1") && e.contains("tabs"), "{e}");
    let e = gmt("", &g).unwrap_err();
    assert!(e.contains("no pathways"), "{e}");
}

#[test]
fn gmt_without_gene_list_is_an_error() {
    let e = PathwaySet::read(Path::new("sets.gmt"), None, 10).unwrap_err();
    assert!(e.to_string().contains("gene list"), "{e}");
}

#[test]
fn real_go_mf_index_loads() {
    let d = shared().join("data/reference-cohorts");
    let g = GeneList::read(&d.join("gene_list.csv")).unwrap();
    let s = PathwaySet::read(
        &d.join("all_gene_indices_molecular_function.json"),
        Some(&g),
        g.len(),
    )
    .unwrap();
    assert_eq!(s.len(), 380);
    assert!(
        !s.names
            .iter()
            .any(|n| n == "UNMAPPED" || n == "UNCLASSIFIED")
    );
    let memberships: usize = s.sizes().iter().sum();
    assert_eq!(memberships, 231_304);
    // every gene is predicted by at least one head
    assert!(s.gene_counts().iter().all(|&c| c >= 1));
    // the background holds at least the listed genes of both keys (they may overlap)
    assert!(s.background.len() >= 2_305);
}

#[test]
fn fixture_graph_mask_equals_the_official_buffers() {
    let fix = shared().join("fixtures/official-small");
    let s = PathwaySet::read_json(&fix.join("pathways.json"), 600).unwrap();
    assert_eq!(s.len(), 24);
    assert_eq!(s.background.len(), 40);
    let w = WeightMap::read_safetensors(&fix.join("weights.safetensors")).unwrap();
    let origin = fix.join("weights.safetensors");
    let add = w.get("pathway_graph.add_mask", &[24, 24], &origin).unwrap();
    let mask = s.attention_mask();
    assert_eq!(mask.len(), add.data.len());
    for (i, (a, b)) in mask.iter().zip(&add.data).enumerate() {
        assert_eq!(a, b, "mask element ({}, {})", i / 24, i % 24);
    }
    // the mask is not trivial: some pathway pairs are unlinked
    assert!(mask.iter().any(|&m| m < 0.0) && mask.contains(&0.0));
    // the official boolean mask (read as 0/1) is true exactly where pathways are unlinked
    let bool_mask = w
        .get("pathway_graph.attn_mask", &[24, 24], &origin)
        .unwrap();
    let adj = s.normalized_adjacency();
    for (i, (m, a)) in bool_mask.data.iter().zip(&adj).enumerate() {
        assert_eq!(
            *m == 1.0,
            *a == 0.0,
            "attn_mask element ({}, {})",
            i / 24,
            i % 24
        );
    }
}

#[test]
fn alphabetical_patches_cover_every_gene_once() {
    let g = GeneList::new(
        ["D", "B", "A", "C", "E"].map(String::from).to_vec(),
        Path::new("g"),
    )
    .unwrap();
    let s = PathwaySet::alphabetical(&g, 2);
    assert_eq!(s.members, vec![vec![2, 1], vec![3, 0], vec![4]]);
    assert!(s.background.is_empty());
    assert!(s.gene_counts().iter().all(|&c| c == 1));
}

/// A pathway named twice is refused (a JSON map would keep only the second silently),
/// as the GMT reader refuses it; the background keys likewise.
#[test]
fn a_pathway_named_twice_in_json_is_refused() {
    let e = json(r#"{"A": [0, 1], "B": [2], "A": [3]}"#, 4).unwrap_err();
    assert!(e.contains("\"A\"") && e.contains("twice"), "{e}");
    let e = json(r#"{"A": [0], "UNMAPPED": [1], "UNMAPPED": [2]}"#, 3).unwrap_err();
    assert!(e.contains("UNMAPPED") && e.contains("twice"), "{e}");
    // distinct names still read, in file order
    let ok = json(r#"{"B": [0], "A": [1], "UNMAPPED": [2]}"#, 3).unwrap();
    assert_eq!(ok.names, ["B", "A"]);
}
