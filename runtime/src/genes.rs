//! Gene lists: one symbol a line, or `gene_list.csv` with a `gene` header (the RNA-FM
//! release's form). The order is the model's output order.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GeneList {
    symbols: Vec<String>,
}

impl GeneList {
    /// Builds a list, rejecting empty and duplicate symbols (`origin` names the source in errors).
    pub fn new(symbols: Vec<String>, origin: &Path) -> Result<Self> {
        if symbols.is_empty() {
            return Err(Error::invalid(origin, "gene list has no genes"));
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(symbols.len());
        for (i, s) in symbols.iter().enumerate() {
            if s.is_empty() {
                return Err(Error::invalid(
                    origin,
                    format!("gene {}: empty symbol", i + 1),
                ));
            }
            if let Some(first) = seen.insert(s.as_str(), i) {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "duplicate gene symbol {s:?} (entries {} and {})",
                        first + 1,
                        i + 1
                    ),
                ));
            }
        }
        Ok(GeneList { symbols })
    }

    /// Reads a gene list file. A first line `gene` (any case) or a CSV with a `gene`
    /// column is accepted; otherwise every non-empty line is a symbol.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines
            .next()
            .ok_or_else(|| Error::invalid(path, "gene list is empty"))?;
        let header: Vec<&str> = first
            .split(',')
            .map(|c| c.trim().trim_matches('"'))
            .collect();
        let symbols = if let Some(col) = header.iter().position(|c| c.eq_ignore_ascii_case("gene"))
        {
            let mut out = Vec::new();
            for (ln, line) in lines.enumerate() {
                let cells: Vec<&str> = line.split(',').collect();
                let cell = cells.get(col).ok_or_else(|| {
                    Error::invalid(path, format!("line {}: no column {}", ln + 2, col + 1))
                })?;
                out.push(cell.trim().trim_matches('"').to_string());
            }
            out
        } else {
            std::iter::once(first)
                .chain(lines)
                .map(str::to_string)
                .collect()
        };
        GeneList::new(symbols, path)
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Symbol → index map, for resolving GMT files and CSV columns.
    pub fn index(&self) -> HashMap<&str, usize> {
        self.symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect()
    }
}
