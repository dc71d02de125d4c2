"""A tile-level synthetic cohort whose driving region is known, for scripts/bench-maps.

Each slide is a grid of tiles (TRIDENT-layout .h5: `features` N x D, `coords` N x 2). Most
tiles are background; a rectangle of "driver" tissue covers a random share of the slide, and
its tiles lie off the background along one direction of feature space by the slide's driver
activity a. The genes of pathway DRIVEN rise with a (saturating: 3 tanh(1.5 a)); the other
pathways' genes follow a nuisance that every tile carries alike. So only the driver tiles
tell a model what DRIVEN is, and a map of DRIVEN should light them up. Written:
  reference.csv   wsi_file_name, patient_id, rna_<GENE> (FPKM-UQ)
  gene_list.csv, pathways.json (RNA-FM index JSON)
  tiles/<slide>.h5         the tiles
  truth/<slide>.npy        1 for each tile of the driver region, else 0 (row order of the .h5)
  truth/activity.json      each slide's driver activity a
  cohort.json              the settings

usage: planted_cohort.py OUT --seed S [--slides N --grid G --dim D --share LO HI --noise X]
"""

import argparse
import json
import os

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--slides", type=int, default=96)
    ap.add_argument("--grid", type=int, default=12, help="tiles per side")
    ap.add_argument("--dim", type=int, default=16, help="feature dimension")
    ap.add_argument("--share", type=float, nargs=2, default=(0.05, 0.45),
                    help="range of the driver region's share of the slide")
    ap.add_argument("--noise", type=float, default=0.5, help="tile feature noise sd")
    ap.add_argument("--separation", type=float, default=3.0,
                    help="driver tiles' offset from background at activity 1")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    genes_per = 20
    names = ["DRIVEN", "NUISANCE_A", "NUISANCE_B"]
    # and 10 genes in no pathway (the background token, as GO sets' UNMAPPED)
    g = genes_per * len(names) + 10
    genes = [f"PG{i:03d}" for i in range(g)]
    os.makedirs(f"{a.out}/tiles", exist_ok=True)
    os.makedirs(f"{a.out}/truth", exist_ok=True)
    with open(f"{a.out}/gene_list.csv", "w") as f:
        f.write("gene\n" + "\n".join(genes) + "\n")
    members = {n: list(range(i * genes_per, (i + 1) * genes_per)) for i, n in enumerate(names)}
    with open(f"{a.out}/pathways.json", "w") as f:
        json.dump({**members, "UNMAPPED": list(range(genes_per * len(names), g))}, f)

    d = a.dim
    driver_dir = rng.normal(size=d)
    driver_dir /= np.linalg.norm(driver_dir)
    nuisance_dir = rng.normal(size=d)
    nuisance_dir -= driver_dir * (nuisance_dir @ driver_dir)
    nuisance_dir /= np.linalg.norm(nuisance_dir)
    base = rng.normal(size=d)
    gene_weight = rng.uniform(0.6, 1.4, size=g)
    gene_mean = rng.uniform(3.0, 8.0, size=g)
    n = a.grid
    rows = []
    activities = {}
    for s in range(a.slides):
        name = f"PL{a.seed:02d}-{s:03d}.svs"
        share = rng.uniform(*a.share)
        # a rectangle of about `share` of the grid, at a random place
        area = max(1, round(share * n * n))
        w = int(np.clip(round(np.sqrt(area) * rng.uniform(0.7, 1.4)), 1, n))
        h = int(np.clip(round(area / w), 1, n))
        x0, y0 = rng.integers(0, n - w + 1), rng.integers(0, n - h + 1)
        gx, gy = np.meshgrid(np.arange(n), np.arange(n))
        gx, gy = gx.ravel(), gy.ravel()
        inside = (gx >= x0) & (gx < x0 + w) & (gy >= y0) & (gy < y0 + h)
        nuisance = rng.normal()
        activity = rng.uniform(0.2, 1.5)
        feats = (base + nuisance * nuisance_dir
                 + a.noise * rng.normal(size=(n * n, d)))
        feats[inside] += activity * a.separation * driver_dir
        coords = np.stack([gx, gy], 1).astype(np.int64) * 512
        with h5py.File(f"{a.out}/tiles/{name[:-4]}.h5", "w") as f5:
            f5.create_dataset("features", data=feats.astype(np.float32))
            c = f5.create_dataset("coords", data=coords)
            c.attrs.update(patch_size=256, patch_size_level0=512)
        np.save(f"{a.out}/truth/{name[:-4]}.npy", inside.astype(np.int8))
        activities[name[:-4]] = activity
        signal = np.zeros(g)
        signal[members["DRIVEN"]] = 3.0 * np.tanh(1.5 * activity)
        for nm in names[1:]:
            signal[members[nm]] = 0.8 * nuisance
        log2 = gene_mean + gene_weight * signal + 0.25 * rng.normal(size=g)
        rows.append((name, f"PP{a.seed:02d}-{s:03d}", np.exp2(np.maximum(log2, 0)) - 1))
    with open(f"{a.out}/reference.csv", "w") as f:
        f.write("wsi_file_name,patient_id," + ",".join("rna_" + x for x in genes) + "\n")
        for name, pid, fpkm in rows:
            f.write(f"{name},{pid}," + ",".join(f"{v:.6g}" for v in fpkm) + "\n")
    with open(f"{a.out}/cohort.json", "w") as f:
        json.dump(vars(a), f, indent=1)
    with open(f"{a.out}/truth/activity.json", "w") as f:
        json.dump(activities, f, indent=1)


if __name__ == "__main__":
    main()
