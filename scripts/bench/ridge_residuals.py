"""Leave-one-out residuals of the ridge baseline, for scripts/trial-ridge-residual.

Usage: ridge_residuals.py COHORT_DIR OUT_DIR

Fits the ridge of `rnafm-eval ridge` (eval/src/ridge.rs: mean/sd/max summaries, standardised,
kernel form, each gene's penalty by exact leave-one-out error) on the training slides
(COHORT_DIR/training.csv) and writes to OUT_DIR:
  residuals.csv       the reference CSV's layout; a training slide's values are its
                      leave-one-out residual (an honest out-of-sample residual, so the flow
                      learns the spread the ridge leaves on new slides), an external slide's
                      its residual from the fitted ridge (held out; never trained on);
                      stored as FPKM-UQ = 2^(residual + OFFSET) - 1
  ridge_external.npy  the ridge's predictions [external slides, genes] (log2), in the
                      order of COHORT_DIR/external.txt
  ridge.json          the offset and the median chosen penalty
The predictions are checked against `rnafm-eval ridge` by the calling script.
"""
import csv
import json
import os
import sys

import numpy as np

OFFSET = 10.0  # keeps 2^(r + OFFSET) - 1 positive for residuals down to -10 log2 units


def summaries(features_dir, slides):
    rows = []
    for s in slides:
        stem = s[:-4] if s.endswith(".svs") else s
        f = np.load(os.path.join(features_dir, stem + ".npy")).astype(np.float64)
        rows.append(np.concatenate([f.mean(0), f.std(0), f.max(0)]))
    return np.array(rows)


def read_csv(path):
    rows = list(csv.reader(open(path)))
    return rows[0], rows[1:]


def main(cohort, out):
    header, rows = read_csv(os.path.join(cohort, "reference.csv"))
    _, train_rows = read_csv(os.path.join(cohort, "training.csv"))
    train = [r[0] for r in train_rows]
    external = [l.strip() for l in open(os.path.join(cohort, "external.txt")) if l.strip()]
    by_slide = {r[0]: r for r in rows}
    # The gene list's order, as `rnafm-eval ridge` and the predictions use it.
    genes = [l.strip() for l in open(os.path.join(cohort, "gene_list.csv")).readlines()[1:] if l.strip()]
    col = [header.index(f"rna_{g}") for g in genes]
    log2 = lambda names: np.log2(np.array([[float(by_slide[s][j]) for j in col] for s in names]) + 1.0)
    feats = os.path.join(cohort, "features")
    x, y = summaries(feats, train), log2(train)
    n = len(train)
    xm, xsd = x.mean(0), x.std(0)
    xsd[xsd <= 1e-12] = 1.0
    xs = (x - xm) / xsd
    ym = y.mean(0)
    yc = y - ym
    e, u = np.linalg.eigh(xs @ xs.T)
    e = np.maximum(e, 0.0)
    q = u.T @ yc
    scale = max(e.sum() / n, 1e-12)
    best = np.full(y.shape[1], np.inf)
    best_rel = np.zeros(y.shape[1])
    best_loo = np.zeros_like(yc)
    for dec in range(6, -7, -1):  # largest penalty first; ties keep the larger one, as in Rust
        rel = 10.0 ** (dec / 2.0)
        shrink = e / (e + rel * scale)
        h = (u ** 2) @ shrink
        loo = (yc - u @ (q * shrink[:, None])) / np.maximum(1.0 - h, 1e-9)[:, None]
        err = (loo ** 2).sum(0)
        better = err < best
        best[better], best_rel[better] = err[better], rel
        best_loo[:, better] = loo[:, better]
    alpha = u @ (q / (e[:, None] + best_rel[None, :] * scale))
    xe = (summaries(feats, external) - xm) / xsd
    pred_ext = xe @ xs.T @ alpha + ym
    resid = dict(zip(train, best_loo))
    resid.update(zip(external, log2(external) - pred_ext))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "residuals.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([h for h in header if not h.startswith("rna_")] + [f"rna_{g}" for g in genes])
        for r in rows:
            keep = [v for h, v in zip(header, r) if not h.startswith("rna_")]
            w.writerow(keep + [f"{v:.6g}" for v in np.exp2(resid[r[0]] + OFFSET) - 1.0])
    np.save(os.path.join(out, "ridge_external.npy"), pred_ext.astype(np.float32))
    json.dump({"offset": OFFSET, "median_relative_lambda": float(np.median(best_rel)),
               "loo_residual_sd": float(best_loo.std()), "training_sd": float(yc.std())},
              open(os.path.join(out, "ridge.json"), "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
