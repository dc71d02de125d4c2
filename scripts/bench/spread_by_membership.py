"""The flow's spread per gene against the number of pathways the gene sits in.

Usage: spread_by_membership.py DRAWS_DIR COHORT_DIR RESIDUALS_CSV
DRAWS_DIR: rnafm-run --save-samples output (<slide>.samples.npy) of a model trained on
RESIDUALS_CSV (scripts/trial-ridge-residual's resid/residuals.csv), run unguided (--cfg 0) so
that only the learned spread shows; COHORT_DIR: the cohort (training.csv, pathways.json).
Prints, per group of genes, the median over genes of (sd of a slide's draws, averaged over
slides) ÷ (sd of the training residuals): 1 for a flow that reproduces the spread it learned.
"""
import csv
import glob
import json
import sys

import numpy as np

draws_dir, cohort, residuals = sys.argv[1:4]
d = np.stack([np.load(f) for f in sorted(glob.glob(f"{draws_dir}/*.samples.npy"))])
within = d.std(1).mean(0)
rows = list(csv.reader(open(residuals)))
cols = [j for j, h in enumerate(rows[0]) if h.startswith("rna_")]
train = {r[0] for r in list(csv.reader(open(f"{cohort}/training.csv")))[1:]}
target = np.log2(np.array([[float(r[j]) for j in cols] for r in rows[1:] if r[0] in train]) + 1.0).std(0)
ratio = within / target
count = np.zeros(len(ratio), int)
for members in json.load(open(f"{cohort}/pathways.json")).values():
    count[members] += 1
print(f"all genes: {len(ratio)}, median ratio {np.median(ratio):.3f}")
for lo, hi in ((0, 0), (1, 1), (2, 3), (4, 10), (11, 10**9)):
    m = (count >= lo) & (count <= hi)
    if m.any():
        label = f"{lo}" if lo == hi else (f"{lo}+" if hi == 10**9 else f"{lo}-{hi}")
        print(f"in {label:>4} pathway(s): {m.sum():5d} genes, median ratio {np.median(ratio[m]):.3f}")
