//! The reference CSV of the official RNA-FM and SEQUOIA code: one row per slide with
//! `wsi_file_name`, `patient_id`, optional `tcga_project`, then `rna_<GENE>` columns of
//! FPKM-UQ values. Values are kept as log2(FPKM-UQ+1), the model's target scale. Other
//! columns (e.g. a pandas index) are ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::error::{Error, Result};
use crate::genes::GeneList;

pub const SLIDE_COLUMN: &str = "wsi_file_name";
pub const PATIENT_COLUMN: &str = "patient_id";
pub const PROJECT_COLUMN: &str = "tcga_project";
pub const GENE_PREFIX: &str = "rna_";

/// A parsed reference CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceCohort {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    pub slides: Vec<String>,
    pub patients: Vec<String>,
    /// `tcga_project` per slide, when the column exists.
    pub projects: Option<Vec<String>>,
    /// Gene symbols, `rna_` prefix stripped, in column order.
    pub genes: Vec<String>,
    /// log2(FPKM-UQ+1), slides × genes.
    pub log2: Array2<f32>,
}

impl ReferenceCohort {
    /// Reads and checks a reference CSV.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(file);
        let headers = rdr
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect::<Vec<_>>();
        let find = |name: &str| headers.iter().position(|h| h == name);
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                Error::invalid(path, format!("line 1: missing required column {name:?}"))
            })
        };
        let slide_col = need(SLIDE_COLUMN)?;
        let patient_col = need(PATIENT_COLUMN)?;
        let project_col = find(PROJECT_COLUMN);
        let mut gene_cols = Vec::new();
        let mut genes = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (c, h) in headers.iter().enumerate() {
            if let Some(sym) = h.strip_prefix(GENE_PREFIX) {
                if sym.is_empty() {
                    return Err(Error::invalid(
                        path,
                        format!("line 1, column {}: gene column with no symbol", c + 1),
                    ));
                }
                if let Some(first) = seen.insert(sym, c) {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "line 1: duplicate gene column {h:?} (columns {} and {})",
                            first + 1,
                            c + 1
                        ),
                    ));
                }
                gene_cols.push(c);
                genes.push(sym.to_string());
            }
        }
        if genes.is_empty() {
            return Err(Error::invalid(
                path,
                format!("line 1: no gene columns (named {GENE_PREFIX}<GENE>)"),
            ));
        }

        let mut slides = Vec::new();
        let mut patients = Vec::new();
        let mut projects = project_col.map(|_| Vec::new());
        let mut values: Vec<f32> = Vec::new();
        let mut slide_line: HashMap<String, u64> = HashMap::new();
        let mut record = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(csv_error(path, e)),
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let cell = |c: usize| record.get(c).unwrap_or("").trim();
            let slide = cell(slide_col);
            if slide.is_empty() {
                return Err(Error::invalid(
                    path,
                    format!("line {line}: empty {SLIDE_COLUMN}"),
                ));
            }
            if let Some(first) = slide_line.insert(slide.to_string(), line) {
                return Err(Error::invalid(
                    path,
                    format!(
                        "line {line}: duplicate {SLIDE_COLUMN} {slide:?} (first on line {first})"
                    ),
                ));
            }
            let patient = cell(patient_col);
            if patient.is_empty() {
                return Err(Error::invalid(
                    path,
                    format!("line {line}: empty {PATIENT_COLUMN}"),
                ));
            }
            slides.push(slide.to_string());
            patients.push(patient.to_string());
            if let (Some(p), Some(c)) = (projects.as_mut(), project_col) {
                p.push(cell(c).to_string());
            }
            for &c in &gene_cols {
                values.push(parse_fpkm(cell(c)).map_err(|msg| {
                    Error::invalid(
                        path,
                        format!("line {line}, column {} ({}): {msg}", c + 1, headers[c]),
                    )
                })?);
            }
        }
        if slides.is_empty() {
            return Err(Error::invalid(path, "no data rows (only a header)"));
        }
        let log2 = Array2::from_shape_vec((slides.len(), genes.len()), values)
            .map_err(|e| Error::invalid(path, format!("internal shape error: {e}")))?;
        Ok(ReferenceCohort {
            path: path.to_path_buf(),
            slides,
            patients,
            projects,
            genes,
            log2,
        })
    }

    /// The log2 values with columns in the order of `genes`; CSV genes not in the list are
    /// dropped. Genes of the list missing from the CSV are an error that says how many and
    /// names the first few.
    pub fn aligned(&self, genes: &GeneList) -> Result<Array2<f32>> {
        let index: HashMap<&str, usize> = self
            .genes
            .iter()
            .enumerate()
            .map(|(i, g)| (g.as_str(), i))
            .collect();
        let mut cols = Vec::with_capacity(genes.len());
        let mut missing = Vec::new();
        for g in genes.symbols() {
            match index.get(g.as_str()) {
                Some(&c) => cols.push(c),
                None => missing.push(g.as_str()),
            }
        }
        if !missing.is_empty() {
            let first: Vec<&str> = missing.iter().take(5).copied().collect();
            return Err(Error::invalid(
                &self.path,
                format!(
                    "{} of the {} genes of the gene list have no {GENE_PREFIX}<GENE> column, e.g. {}",
                    missing.len(),
                    genes.len(),
                    first.join(", ")
                ),
            ));
        }
        Ok(self.log2.select(ndarray::Axis(1), &cols))
    }

    pub fn len(&self) -> usize {
        self.slides.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slides.is_empty()
    }

    /// Writes the cohort as a reference CSV (FPKM-UQ = 2^v − 1), atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_reference_csv(
            path,
            &self.slides,
            &self.patients,
            self.projects.as_deref(),
            &self.genes,
            &self.log2,
        )
    }
}

/// Writes a reference CSV from log2(FPKM-UQ+1) values (slides × genes), atomically. Values
/// are written as FPKM-UQ with enough digits for the log2 values to read back to ~1e-6.
pub fn write_reference_csv(
    path: &Path,
    slides: &[String],
    patients: &[String],
    projects: Option<&[String]>,
    genes: &[String],
    log2: &Array2<f32>,
) -> Result<()> {
    if log2.dim() != (slides.len(), genes.len()) || patients.len() != slides.len() {
        return Err(Error::invalid(
            path,
            format!(
                "cannot write: {} slides, {} patients, {} genes but values are {:?}",
                slides.len(),
                patients.len(),
                genes.len(),
                log2.dim()
            ),
        ));
    }
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        let mut header = vec![SLIDE_COLUMN.to_string(), PATIENT_COLUMN.to_string()];
        if projects.is_some() {
            header.push(PROJECT_COLUMN.to_string());
        }
        header.extend(genes.iter().map(|g| format!("{GENE_PREFIX}{g}")));
        out.write_record(&header)?;
        let mut row = Vec::with_capacity(header.len());
        for (i, (s, p)) in slides.iter().zip(patients).enumerate() {
            row.clear();
            row.push(s.clone());
            row.push(p.clone());
            if let Some(pr) = projects {
                row.push(pr.get(i).cloned().unwrap_or_default());
            }
            for &v in log2.row(i) {
                let fpkm = (f64::from(v).exp2() - 1.0).max(0.0);
                row.push(format!("{fpkm:.9e}"));
            }
            out.write_record(&row)?;
        }
        out.flush()?;
        Ok(())
    })
}

/// Parses one FPKM-UQ cell into log2(x+1), or says why it cannot.
fn parse_fpkm(s: &str) -> std::result::Result<f32, String> {
    if s.is_empty() {
        return Err("empty value".into());
    }
    let x: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if x.is_nan() {
        return Err("NaN value".into());
    }
    if x.is_infinite() {
        return Err(format!("infinite value {s:?}"));
    }
    if x < 0.0 {
        return Err(format!("negative FPKM-UQ value {s}"));
    }
    Ok((x + 1.0).log2() as f32)
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    match e.position() {
        Some(p) => Error::invalid(path, format!("line {}: {e}", p.line())),
        None => Error::invalid(path, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "ref.csv", text);
        match ReferenceCohort::read(&p) {
            Ok(c) => panic!("expected an error, read {} slides", c.len()),
            Err(e) => {
                let s = e.to_string();
                assert!(s.contains("ref.csv"), "error does not name the file: {s}");
                s
            }
        }
    }

    #[test]
    fn reads_and_transforms() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "ref.csv",
            ",wsi_file_name,patient_id,tcga_project,rna_A,rna_B\n\
             0,s1.svs,P1,TCGA-LUAD,0,3\n\
             1,s2.svs,P1,TCGA-LUAD,1.5,1e2\n",
        );
        let c = ReferenceCohort::read(&p).unwrap();
        assert_eq!(c.slides, ["s1.svs", "s2.svs"]);
        assert_eq!(c.patients, ["P1", "P1"]);
        assert_eq!(c.projects.as_deref().unwrap(), ["TCGA-LUAD", "TCGA-LUAD"]);
        assert_eq!(c.genes, ["A", "B"]);
        let expect = [[0.0f64, 3.0], [1.5, 100.0]].map(|r| r.map(|x| (x + 1.0).log2() as f32));
        for ((i, j), v) in c.log2.indexed_iter() {
            assert!((v - expect[i][j]).abs() < 1e-6);
        }
    }

    #[test]
    fn project_column_is_optional_and_write_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "ref.csv",
            "wsi_file_name,patient_id,rna_X,rna_Y,rna_Z\na,p,0.5,7,1234.5\nb,q,0,0,2\n",
        );
        let c = ReferenceCohort::read(&p).unwrap();
        assert!(c.projects.is_none());
        let out = dir.path().join("out/ref2.csv");
        c.write(&out).unwrap();
        let c2 = ReferenceCohort::read(&out).unwrap();
        assert_eq!(
            (&c2.slides, &c2.patients, &c2.genes),
            (&c.slides, &c.patients, &c.genes)
        );
        let diff = (&c2.log2 - &c.log2)
            .mapv(f32::abs)
            .fold(0.0f32, |a, &b| a.max(b));
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn aligns_to_a_gene_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "ref.csv",
            "wsi_file_name,patient_id,rna_A,rna_B,rna_C\ns,p,1,3,7\n",
        );
        let c = ReferenceCohort::read(&p).unwrap();
        let gl = GeneList::new(vec!["C".into(), "A".into()], Path::new("g")).unwrap();
        let a = c.aligned(&gl).unwrap();
        assert_eq!(a.row(0).to_vec(), vec![3.0, 1.0]); // log2(7+1), log2(1+1)
        let gl = GeneList::new(
            vec!["A".into(), "Q1".into(), "B".into(), "Q2".into()],
            Path::new("g"),
        )
        .unwrap();
        let e = c.aligned(&gl).unwrap_err().to_string();
        assert!(
            e.contains("ref.csv") && e.contains("2 of the 4") && e.contains("Q1, Q2"),
            "{e}"
        );
    }

    #[test]
    fn non_numeric_value_names_line_and_column() {
        let e = err("wsi_file_name,patient_id,rna_A,rna_B\ns1,p,1,2\ns2,p,1,abc\n");
        assert!(
            e.contains("line 3, column 4 (rna_B)") && e.contains("\"abc\""),
            "{e}"
        );
    }

    #[test]
    fn negative_nan_inf_and_empty_values() {
        let e = err("wsi_file_name,patient_id,rna_A\ns1,p,-0.5\n");
        assert!(
            e.contains("line 2, column 3") && e.contains("negative"),
            "{e}"
        );
        let e = err("wsi_file_name,patient_id,rna_A\ns1,p,nan\n");
        assert!(e.contains("line 2") && e.contains("NaN"), "{e}");
        let e = err("wsi_file_name,patient_id,rna_A\ns1,p,inf\n");
        assert!(e.contains("infinite"), "{e}");
        let e = err("wsi_file_name,patient_id,rna_A\ns1,p,\n");
        assert!(e.contains("empty value"), "{e}");
    }

    #[test]
    fn duplicate_gene_column() {
        let e = err("wsi_file_name,patient_id,rna_A,rna_B,rna_A\ns1,p,1,2,3\n");
        assert!(
            e.contains("duplicate gene column") && e.contains("columns 3 and 5"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_slide() {
        let e = err("wsi_file_name,patient_id,rna_A\ns1,p,1\ns2,p,1\ns1,q,2\n");
        assert!(e.contains("line 4") && e.contains("first on line 2"), "{e}");
    }

    #[test]
    fn missing_columns() {
        let e = err("slide,patient_id,rna_A\ns1,p,1\n");
        assert!(e.contains("wsi_file_name"), "{e}");
        let e = err("wsi_file_name,rna_A\ns1,1\n");
        assert!(e.contains("patient_id"), "{e}");
        let e = err("wsi_file_name,patient_id,A\ns1,p,1\n");
        assert!(e.contains("no gene columns"), "{e}");
    }

    #[test]
    fn zero_rows_and_ragged_rows() {
        let e = err("wsi_file_name,patient_id,rna_A\n");
        assert!(e.contains("no data rows"), "{e}");
        let e = err("wsi_file_name,patient_id,rna_A\ns1,p,1\ns2,p\n");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn missing_file() {
        let e = ReferenceCohort::read(Path::new("/nonexistent/ref.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ref.csv"), "{e}");
    }
}
