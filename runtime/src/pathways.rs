//! Pathway sets: which genes form each pathway token, and which genes go to the background
//! token. Two file forms are read:
//! - the RNA-FM JSON index `{"name": [gene indices]}`, where the keys `UNMAPPED` and
//!   `UNCLASSIFIED` list background genes;
//! - GMT (`name \t description \t SYMBOL ...`, MSigDB/Enrichr style), resolved against a
//!   gene list.
//!
//! Genes that no pathway and no background key covers also become background, so every
//! gene gets a prediction.

use std::collections::HashSet;
use std::path::Path;

use crate::error::{Error, Result};
use crate::genes::GeneList;

/// Keys of the JSON index that hold background genes rather than a pathway.
pub const BACKGROUND_KEYS: [&str; 2] = ["UNMAPPED", "UNCLASSIFIED"];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PathwaySet {
    /// Number of genes in the model's output.
    pub n_genes: usize,
    /// Pathway names, in token order.
    pub names: Vec<String>,
    /// Member gene indices of each pathway, in the order of the pathway's input columns.
    pub members: Vec<Vec<usize>>,
    /// Background gene indices, in the order of the background MLP's input columns.
    pub background: Vec<usize>,
}

impl PathwaySet {
    /// Builds and checks a set. `bg_listed` are background genes named by the source (in
    /// order); genes that nothing covers are appended in ascending order.
    pub fn new(
        n_genes: usize,
        names: Vec<String>,
        members: Vec<Vec<usize>>,
        bg_listed: Vec<usize>,
        origin: &Path,
    ) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::invalid(origin, "no pathways"));
        }
        let mut covered = vec![false; n_genes];
        for (name, m) in names.iter().zip(&members) {
            if m.is_empty() {
                return Err(Error::invalid(
                    origin,
                    format!("pathway {name:?} has no known gene"),
                ));
            }
            let mut seen = HashSet::with_capacity(m.len());
            for &g in m {
                if g >= n_genes {
                    return Err(Error::invalid(
                        origin,
                        format!(
                            "pathway {name:?}: gene index {g} out of range (the gene list has {n_genes} genes)"
                        ),
                    ));
                }
                if !seen.insert(g) {
                    return Err(Error::invalid(
                        origin,
                        format!("pathway {name:?}: gene index {g} listed twice"),
                    ));
                }
                covered[g] = true;
            }
        }
        let mut background = Vec::new();
        let mut in_bg = vec![false; n_genes];
        for g in bg_listed {
            if g >= n_genes {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "background gene index {g} out of range (the gene list has {n_genes} genes)"
                    ),
                ));
            }
            if !in_bg[g] {
                in_bg[g] = true;
                background.push(g);
            }
        }
        for g in 0..n_genes {
            if !covered[g] && !in_bg[g] {
                background.push(g);
            }
        }
        Ok(PathwaySet {
            n_genes,
            names,
            members,
            background,
        })
    }

    /// Reads the JSON index form. `n_genes` is the length of the gene list it indexes.
    pub fn read_json(path: &Path, n_genes: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let entries: JsonEntries = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not a JSON object of pathways: {e}")))?;
        let mut names = Vec::new();
        let mut members = Vec::new();
        let mut bg = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, v) in entries.0 {
            // A JSON object may repeat a key, and a map keeps only the last: refuse instead,
            // as the GMT reader does.
            if !seen.insert(name.clone()) {
                return Err(Error::invalid(
                    path,
                    format!("pathway {name:?} is listed twice"),
                ));
            }
            let arr = v.as_array().ok_or_else(|| {
                Error::invalid(
                    path,
                    format!("pathway {name:?}: expected a list of gene indices"),
                )
            })?;
            let mut idx = Vec::with_capacity(arr.len());
            for x in arr {
                let g = x.as_u64().ok_or_else(|| {
                    Error::invalid(
                        path,
                        format!("pathway {name:?}: {x} is not a gene index (a whole number ≥ 0)"),
                    )
                })?;
                idx.push(g as usize);
            }
            if BACKGROUND_KEYS.contains(&name.as_str()) {
                bg.extend(idx);
            } else {
                names.push(name);
                members.push(idx);
            }
        }
        PathwaySet::new(n_genes, names, members, bg, path)
    }

    /// Reads a GMT file, resolving symbols against `genes`. Symbols not in the gene list
    /// are dropped (their count is logged); a pathway left with no gene is an error.
    pub fn read_gmt(path: &Path, genes: &GeneList) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let index = genes.index();
        let mut names = Vec::new();
        let mut members = Vec::new();
        let mut seen_names = HashSet::new();
        let mut dropped = 0usize;
        for (ln, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut cells = line.split('\t');
            let name = cells.next().unwrap_or_default().trim().to_string();
            if name.is_empty() {
                return Err(Error::invalid(
                    path,
                    format!("line {}: empty pathway name", ln + 1),
                ));
            }
            if cells.next().is_none() {
                return Err(Error::invalid(
                    path,
                    format!(
                        "line {}: expected name, description and genes separated by tabs",
                        ln + 1
                    ),
                ));
            }
            if !seen_names.insert(name.clone()) {
                return Err(Error::invalid(
                    path,
                    format!("line {}: pathway {name:?} listed twice", ln + 1),
                ));
            }
            let mut m = Vec::new();
            let mut in_m = HashSet::new();
            for sym in cells.map(str::trim).filter(|s| !s.is_empty()) {
                // Enrichr writes "SYMBOL,1.0" for weighted sets; the weight is not used.
                let sym = sym.split(',').next().unwrap_or(sym);
                match index.get(sym) {
                    Some(&g) => {
                        if in_m.insert(g) {
                            m.push(g);
                        }
                    }
                    None => dropped += 1,
                }
            }
            if m.is_empty() {
                return Err(Error::invalid(
                    path,
                    format!("line {}: pathway {name:?} has no known gene", ln + 1),
                ));
            }
            names.push(name);
            members.push(m);
        }
        if dropped > 0 {
            tracing::info!(file = %path.display(), dropped, "GMT symbols not in the gene list were dropped");
        }
        PathwaySet::new(genes.len(), names, members, Vec::new(), path)
    }

    /// Reads either form, by extension (`.json` or `.gmt`/anything else with a gene list).
    pub fn read(path: &Path, genes: Option<&GeneList>, n_genes: usize) -> Result<Self> {
        let is_json = path
            .extension()
            .map(|e| e.eq_ignore_ascii_case("json"))
            .unwrap_or(false);
        if is_json {
            PathwaySet::read_json(path, n_genes)
        } else {
            let genes = genes.ok_or_else(|| {
                Error::invalid(
                    path,
                    "a GMT pathway file needs a gene list (--genes) to resolve symbols",
                )
            })?;
            PathwaySet::read_gmt(path, genes)
        }
    }

    /// Patches of `per_token` adjacent genes in alphabetical order of symbol (the paper's
    /// "alphabetical tokens" ablation); no background genes.
    pub fn alphabetical(genes: &GeneList, per_token: usize) -> Self {
        let per_token = per_token.max(1);
        let mut order: Vec<usize> = (0..genes.len()).collect();
        order.sort_by(|&a, &b| genes.symbols()[a].cmp(&genes.symbols()[b]));
        let members: Vec<Vec<usize>> = order.chunks(per_token).map(|c| c.to_vec()).collect();
        let names = (0..members.len())
            .map(|i| format!("patch {i:05}"))
            .collect();
        PathwaySet {
            n_genes: genes.len(),
            names,
            members,
            background: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn sizes(&self) -> Vec<usize> {
        self.members.iter().map(Vec::len).collect()
    }

    /// How many outputs (pathway heads + background head) predict each gene; the model
    /// averages over them.
    pub fn gene_counts(&self) -> Vec<u32> {
        let mut c: Vec<u32> = self.pathway_counts().iter().map(|&n| n as u32).collect();
        for &g in &self.background {
            c[g] += 1;
        }
        c
    }

    /// How many pathway tokens hold each gene (0 for a background gene): what interval
    /// calibration groups genes by (`calibration::GeneGroup`).
    pub fn pathway_counts(&self) -> Vec<usize> {
        let mut c = vec![0usize; self.n_genes];
        for m in &self.members {
            for &g in m {
                c[g] += 1;
            }
        }
        c
    }

    /// Normalised pathway adjacency as the official code builds it: pathways sharing at
    /// least one gene are linked; symmetrised, self-loops, D^-1/2 A D^-1/2. Row-major P×P.
    pub fn normalized_adjacency(&self) -> Vec<f32> {
        let p = self.len();
        let mut owners: Vec<Vec<usize>> = vec![Vec::new(); self.n_genes];
        for (i, m) in self.members.iter().enumerate() {
            for &g in m {
                owners[g].push(i);
            }
        }
        let mut adj = vec![0f32; p * p];
        for o in &owners {
            for &a in o {
                for &b in o {
                    adj[a * p + b] = 1.0;
                }
            }
        }
        for i in 0..p {
            adj[i * p + i] = 1.0;
        }
        let d: Vec<f32> = (0..p)
            .map(|i| {
                adj[i * p..(i + 1) * p]
                    .iter()
                    .sum::<f32>()
                    .max(1e-6)
                    .powf(-0.5)
            })
            .collect();
        for i in 0..p {
            for j in 0..p {
                adj[i * p + j] *= d[i] * d[j];
            }
        }
        adj
    }

    /// The additive attention mask of the pathway graph block: 0 where linked, −1e4 where
    /// the normalised adjacency is 0 (as the official code). Row-major P×P.
    pub fn attention_mask(&self) -> Vec<f32> {
        self.normalized_adjacency()
            .into_iter()
            .map(|a| if a == 0.0 { -1e4 } else { 0.0 })
            .collect()
    }
}

/// A JSON object's entries in file order, repeated keys included (serde_json's map keeps
/// only the last of a repeated key).
struct JsonEntries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonEntries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of pathway name to gene indices")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<JsonEntries, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    v.push(entry);
                }
                Ok(JsonEntries(v))
            }
        }
        d.deserialize_map(Visitor)
    }
}
