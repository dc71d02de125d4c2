//! Patient-level k-fold splits: all slides of a patient fall in the same fold, so no
//! patient is both trained on and tested on. Written to `splits.json` and reusable.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rnafm_runtime::{Error, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Splits {
    pub seed: u64,
    /// Patient ids held out in each fold.
    pub folds: Vec<Vec<String>>,
}

impl Splits {
    /// Shuffles the distinct patients with `seed` and deals them into `k` folds.
    pub fn new(patients: &[String], k: usize, seed: u64, origin: &Path) -> Result<Self> {
        let mut uniq: Vec<String> = patients
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if k < 2 {
            return Err(Error::invalid(
                origin,
                format!("--folds {k}: need at least 2 folds"),
            ));
        }
        if uniq.len() < k {
            return Err(Error::invalid(
                origin,
                format!("{} patients cannot fill {k} folds", uniq.len()),
            ));
        }
        uniq.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut folds = vec![Vec::new(); k];
        for (i, p) in uniq.into_iter().enumerate() {
            folds[i % k].push(p);
        }
        Ok(Splits { seed, folds })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let s: Splits = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not a splits file: {e}")))?;
        if s.folds.len() < 2 {
            return Err(Error::invalid(path, "a splits file needs at least 2 folds"));
        }
        Ok(s)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("splits serialise");
        rnafm_runtime::atomic::write_bytes_atomic(path, text.as_bytes())
    }

    /// Slide indices (train, held out) of fold `f`. Patients of the cohort that no fold
    /// lists are an error, so a reused splits file always covers the cohort.
    pub fn slides(
        &self,
        patients: &[String],
        f: usize,
        origin: &Path,
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let fold_of: HashMap<&str, usize> = self
            .folds
            .iter()
            .enumerate()
            .flat_map(|(i, ps)| ps.iter().map(move |p| (p.as_str(), i)))
            .collect();
        let mut train = Vec::new();
        let mut test = Vec::new();
        for (s, p) in patients.iter().enumerate() {
            match fold_of.get(p.as_str()) {
                Some(&i) if i == f => test.push(s),
                Some(_) => train.push(s),
                None => {
                    return Err(Error::invalid(
                        origin,
                        format!("patient {p:?} is in no fold of the splits file"),
                    ));
                }
            }
        }
        Ok((train, test))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_patient_disjoint_and_cover_all_slides() {
        let patients: Vec<String> = ["a", "a", "b", "c", "c", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = Splits::new(&patients, 2, 9, Path::new("x")).unwrap();
        let mut seen = vec![0; patients.len()];
        for f in 0..2 {
            let (train, test) = s.slides(&patients, f, Path::new("x")).unwrap();
            for &t in &test {
                seen[t] += 1;
                assert!(train.iter().all(|&r| patients[r] != patients[t]));
            }
            assert_eq!(train.len() + test.len(), patients.len());
        }
        assert!(
            seen.iter().all(|&c| c == 1),
            "each slide held out exactly once"
        );
        assert_eq!(
            s,
            Splits::new(&patients, 2, 9, Path::new("x")).unwrap(),
            "seeded"
        );
        assert!(
            Splits::new(&patients, 6, 9, Path::new("x")).is_err(),
            "5 patients, 6 folds"
        );
    }
}
