"""Scores rnafm-run --maps against the planted driver regions of planted_cohort.py.

For every slide in MAPS (a --maps output folder) with a truth mask in COHORT/truth: the
AUROC with which the tiles' effect on pathway DRIVEN separates driver tiles from the rest
(1 = every driver tile above every other; 0.5 = chance), and the share of driver tiles
among the |region| tiles with the largest effect; over the slides, how well the model
learned the driver (r of its predicted DRIVEN score with the true activity). Prints one
JSON object.

usage: score_maps.py COHORT MAPS
"""

import csv
import glob
import json
import os
import sys

import numpy as np


def auroc(score, truth):
    """Mann-Whitney AUROC with ties counted half."""
    pos, neg = score[truth], score[~truth]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def main():
    cohort, maps = sys.argv[1], sys.argv[2]
    rows = []
    act_path = f"{cohort}/truth/activity.json"
    activity = json.load(open(act_path)) if os.path.exists(act_path) else {}
    for path in sorted(glob.glob(f"{maps}/*.map.tiles.tsv")):
        slide = os.path.basename(path)[: -len(".map.tiles.tsv")]
        truth = np.load(f"{cohort}/truth/{slide}.npy").astype(bool)
        with open(path, newline="") as f:
            r = list(csv.DictReader(f, delimiter="\t"))
        order = np.array([int(x["tile"]) for x in r])
        effect = np.empty(len(r))
        effect[order] = [float(x["DRIVEN"]) for x in r]
        top = np.argsort(-effect, kind="stable")[: truth.sum()]
        with open(f"{maps}/{slide}.pathways.tsv", newline="") as f:
            pathways = list(csv.DictReader(f, delimiter="\t"))
        rows.append({
            "slide": slide,
            "activity": activity.get(slide),
            "driver_tiles": int(truth.sum()),
            "tiles": len(truth),
            "auroc": auroc(effect, truth),
            "precision_at_region": float(truth[top].mean()),
            "driven_score": next(float(x["mean"]) for x in pathways if x["pathway"] == "DRIVEN"),
        })
    au = np.array([x["auroc"] for x in rows if x["auroc"] is not None])
    # Did the model learn the driver? r of its predicted DRIVEN score with the true activity.
    acts = [(x["activity"], x["driven_score"]) for x in rows if x["activity"] is not None]
    driven_r = float(np.corrcoef(np.array(acts).T)[0, 1]) if len(acts) > 2 else None
    pr = np.array([x["precision_at_region"] for x in rows])
    print(json.dumps({
        "slides": len(rows),
        "driven_r": driven_r,
        "auroc_mean": float(au.mean()), "auroc_min": float(au.min()),
        "auroc_sd": float(au.std(ddof=1)) if len(au) > 1 else 0.0,
        "precision_mean": float(pr.mean()), "precision_min": float(pr.min()),
        "per_slide": rows,
    }))


if __name__ == "__main__":
    main()
