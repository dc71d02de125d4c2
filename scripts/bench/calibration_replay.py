#!/usr/bin/env python3
"""Which slides an interval calibration should be fitted on: replays the fit on several
subsets of one model's raw draws and reports the coverage each fit gives on external slides.

The score of a value y against draws with median m is (y - m)/(q_(1+L)/2 - m) above the median
and (m - y)/(m - q_(1-L)/2) below it, and the factor is the split-conformal rank of the scores
(runtime/src/calibration.rs). rnafm-run stretches the draws by that factor around the median,
so an external value is covered at level L exactly when its score is at most the factor;
the replay counts that instead of sampling again for every fit (the README's table). The
score, quantile and rank below copy that Rust (no command reports coverage under factors
fitted elsewhere); the copy reproduced the bench's calibrated coverage within a point.

Inputs: a cohort of scripts/bench-accuracy (reference.csv, gene_list.csv, external.txt), the
fold whose model is calibrated (validation.txt, heldout.txt), and rnafm-run --save-samples
--no-calibration folders of that model: UNSEEN (its validation and held-out slides) and
EXTERNAL (the external slides), the same number of draws each (100 for the README), e.g.

    rnafm-export --onnx OUT/cohort7/workflow/fold_0/best --training-features COHORT/features \
        --no-calibration --no-self-test -o unc.rnafm
    rnafm-run <validation + held-out .npy> --model unc.rnafm --samples 100 --save-samples \
        --no-calibration --out unseen
    rnafm-run <external .npy> ... --out external
    scripts/bench/calibration_replay.py COHORT OUT/cohort7/workflow/fold_0 unseen external

(bench-accuracy deletes the features after scoring: regenerate them with
scripts/bench/cohorts.sh's synth_cohort, which writes the same cohort again.)
"""
import csv
import json
import sys

import numpy as np

LEVELS = (0.5, 0.8, 0.9)


def truth(cohort):
    rows = list(csv.reader(open(f"{cohort}/reference.csv")))
    genes = [g.strip() for g in open(f"{cohort}/gene_list.csv").read().split()[1:]]
    col = {h[4:]: i for i, h in enumerate(rows[0]) if h.startswith("rna_")}
    idx = [col[g] for g in genes]
    return {r[0]: np.log2(np.array([float(r[i]) for i in idx]) + 1.0) for r in rows[1:]}


def quantile(sorted_draws, p):
    # The interpolation of runtime/src/stats.rs quantile_sorted.
    n = sorted_draws.shape[0]
    pos = p * (n - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_draws[lo] + (sorted_draws[hi] - sorted_draws[lo]) * (pos - lo)


def scores(folder, slides, y_of, draws=None):
    out = {l: [] for l in LEVELS}
    for s in slides:
        x = np.load(f"{folder}/{s.rsplit('.', 1)[0]}.samples.npy").astype(np.float64)
        x = np.sort(x[:draws] if draws else x, axis=0)
        y, m = y_of[s], quantile(x, 0.5)
        for l in LEVELS:
            half = np.where(y >= m, quantile(x, (1 + l) / 2) - m, m - quantile(x, (1 - l) / 2))
            d = np.abs(y - m)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[l].append(np.where(d == 0, 0.0, np.where(half > 0, d / half, np.inf)))
    return {l: np.concatenate(v) for l, v in out.items()}


def fit(sc):
    f = {}
    for l, v in sc.items():
        v = np.sort(v)
        k = min(max(int(np.ceil((len(v) + 1) * l)), 1), len(v))
        f[l] = float(v[k - 1])
    return f


def coverage(sc, factors):
    return [round(100 * float(np.mean(sc[l] <= factors[l])), 1) for l in LEVELS]


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    cohort, fold, unseen, external = sys.argv[1:]
    lines = lambda p: [l.strip() for l in open(p) if l.strip()]
    val, held = lines(f"{fold}/validation.txt"), lines(f"{fold}/heldout.txt")
    ext = lines(f"{cohort}/external.txt")
    y = truth(cohort)
    se = scores(external, ext, y)
    n_all = np.load(f"{unseen}/{val[0].rsplit('.', 1)[0]}.samples.npy", mmap_mode="r").shape[0]
    rows = {"raw": {"external": coverage(se, {l: 1.0 for l in LEVELS})}}
    both = f"{len(val) + len(held)}: validation + held-out"
    # Every fit at the folders' own draw count, the union also at 50 and 20 of them.
    for name, slides, n in [(f"{len(val)} validation", val, n_all),
                            (f"{len(held)} held-out", held, n_all),
                            (both, val + held, n_all), (both, val + held, 50),
                            (both, val + held, 20)]:
        if n > n_all:
            continue
        f = fit(scores(unseen, slides, y, n))
        rows[f"{name}, {n} draws"] = {
            "factors": [round(f[l], 3) for l in LEVELS], "external": coverage(se, f)}
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
