//! Model presets (`models/presets/*.json`): named sets of architecture hyper-parameters
//! that `rnafm-train train --preset` applies over the command-line defaults.

use std::path::Path;

use rnafm_runtime::{Error, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub description: String,
    pub hidden: usize,
    pub depth: usize,
    pub heads: usize,
    pub cond_drop: f64,
    pub graph_attention: bool,
}

impl Preset {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not a model preset: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_presets_parse_and_paper_matches_the_paper_config() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/presets");
        let paper = Preset::read(&dir.join("paper.json")).unwrap();
        let cfg = rnafm_runtime::model_config::ModelConfig::paper(20820, 100, 1024);
        assert_eq!(
            (paper.hidden, paper.depth, paper.heads),
            (cfg.hidden, cfg.depth, cfg.heads)
        );
        assert_eq!(paper.cond_drop, cfg.cond_drop);
        for name in ["small.json", "no-graph.json"] {
            let p = Preset::read(&dir.join(name)).unwrap();
            assert_eq!(p.hidden % p.heads, 0, "{name}");
        }
    }
}
