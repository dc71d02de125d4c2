//! Gene list reading: the real release list, plain lists and the bad-input cases.

use std::path::{Path, PathBuf};

use rnafm_runtime::genes::GeneList;

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/reference-cohorts")
}

fn read_text(text: &str) -> Result<GeneList, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("genes.txt");
    std::fs::write(&p, text).unwrap();
    GeneList::read(&p).map_err(|e| {
        let s = e.to_string();
        assert!(s.contains("genes.txt"), "error does not name the file: {s}");
        s
    })
}

#[test]
fn real_gene_list_csv_loads_in_order() {
    let g = GeneList::read(&reference().join("gene_list.csv")).unwrap();
    assert_eq!(g.len(), 20_820);
    assert_eq!(g.symbols()[0], "A1BG");
    assert_eq!(g.index()["A1BG"], 0);
    assert!(
        g.symbols()
            .iter()
            .all(|s| !s.contains(',') && !s.contains('"'))
    );
}

#[test]
fn plain_list_and_gene_header_forms() {
    let g = read_text("TP53\n\nEGFR\r\nMYC\n").unwrap();
    assert_eq!(g.symbols(), ["TP53", "EGFR", "MYC"]);
    let g = read_text("idx,Gene\n0,TP53\n1,\"EGFR\"\n").unwrap();
    assert_eq!(g.symbols(), ["TP53", "EGFR"]);
    assert_eq!(g.index()["EGFR"], 1);
}

#[test]
fn fixture_genes_load() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/official-small/genes.txt");
    let g = GeneList::read(&p).unwrap();
    assert_eq!(g.len(), 600);
}

#[test]
fn duplicate_symbols_are_rejected_with_positions() {
    let e = read_text("A\nB\nC\nB\n").unwrap_err();
    assert!(e.contains("\"B\"") && e.contains("entries 2 and 4"), "{e}");
}

#[test]
fn empty_lists_are_rejected() {
    let e = read_text("").unwrap_err();
    assert!(e.contains("empty"), "{e}");
    let e = read_text("\n  \n").unwrap_err();
    assert!(e.contains("empty"), "{e}");
    // a header with no genes under it
    let e = read_text("gene\n").unwrap_err();
    assert!(e.contains("no genes"), "{e}");
    let e = GeneList::new(vec![], Path::new("x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no genes"), "{e}");
}

#[test]
fn empty_symbol_in_a_csv_column_is_rejected() {
    let e = read_text("gene,other\nA,1\n,2\n").unwrap_err();
    assert!(e.contains("gene 2") && e.contains("empty symbol"), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    let e = GeneList::read(Path::new("/nonexistent/genes.txt")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/genes.txt"));
}
