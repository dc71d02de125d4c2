//! Packing of the per-pathway linears (pathway sizes 2…16,674 at the paper config).
//!
//! Pathways are sorted by size and grouped into buckets whose members are padded to the
//! bucket's largest size, so each bucket is one Gather + one batched MatMul. A bucket closes
//! when the next size exceeds its smallest by more than `RATIO` (plus `SLACK` genes, so small
//! pathways share buckets): padding stays a few percent of the weights while the number of
//! buckets (ONNX nodes) stays small. Alternatives considered: one dense block-structured
//! MatMul ([231,304 × 380·256] — far too large) and padding everything to the largest
//! pathway (16,674 × 380 × 256 floats — 6.5 GB); both are ruled out by size, so only the
//! bucketing was measured: at the paper config (random weights, 2 shared CPU cores, ORT
//! 1.31.1) it yields 1.059 × the float32 weights on disk and one guided-branch velocity
//! (embed + backbone + heads, batch 2) in 0.16 s (`scripts/bench-export`).

/// Largest-to-smallest size ratio allowed inside a bucket.
pub const RATIO: f64 = 1.25;
/// Absolute padding allowance so tiny pathways do not each get a bucket.
pub const SLACK: usize = 8;

/// A group of pathways padded to the same width.
pub struct Bucket {
    /// Pathway indices (token order positions).
    pub pathways: Vec<usize>,
    /// Padded width (the largest member count in the bucket).
    pub width: usize,
}

pub fn buckets(sizes: &[usize]) -> Vec<Bucket> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| (sizes[i], i));
    let mut out: Vec<Bucket> = Vec::new();
    let mut start = 0usize;
    for &i in &order {
        let s = sizes[i];
        match out.last_mut() {
            Some(b) if (s as f64) <= start as f64 * RATIO + SLACK as f64 => {
                b.pathways.push(i);
                b.width = b.width.max(s);
            }
            _ => {
                start = s;
                out.push(Bucket {
                    pathways: vec![i],
                    width: s,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_pathway_once_and_fit() {
        let sizes = [5, 100, 3, 16674, 7, 120, 2, 90];
        let b = buckets(&sizes);
        let mut seen: Vec<usize> = b.iter().flat_map(|b| b.pathways.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..sizes.len()).collect::<Vec<_>>());
        for bk in &b {
            assert!(bk.pathways.iter().all(|&p| sizes[p] <= bk.width));
        }
        assert!(b.len() < sizes.len());
    }
}
