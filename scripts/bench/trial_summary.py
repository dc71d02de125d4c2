"""Summary of scripts/trial-ridge-residual: OUT/trial.json and OUT/trial.md from the cohorts' eval_*.json.

Usage: trial_summary.py OUT DRAWS RECIPE "CFGS" COHORT...
"""
import json, os, statistics, sys
out, draws, recipe, cfgs, *cohorts = sys.argv[1:]
cfgs = cfgs.split()
load = lambda p: json.load(open(p))
acc = lambda e, k: next(x["mean_pearson"] for x in e["accuracy"] if x["top_k"] == k)
def versus(e, k):
    d = next(x for x in e["versus"]["differences"] if x["top_k"] == k)
    return [d["difference"], d["ci_low"], d["ci_high"]]
rows = []
for i in cohorts:
    w = os.path.join(out, f"cohort{i}")
    rd = load(f"{w}/eval_ridge.json")
    r = {"cohort": int(i),
         "ridge": {k: acc(rd, kk) for k, kk in (("all", None), ("top100", 100), ("top20", 20))},
         "oracle": {"all": rd["oracle"]["oracle_accuracy"][0]["mean_pearson"],
                    **{f"top{x['top_k']}": x["mean_pearson"] for x in rd["oracle"]["oracle_accuracy"][1:]}},
         "train_export_minutes": float(open(f"{w}/rnafm.seconds").read()) / 60, "guidance": {}}
    for g in cfgs:
        e = load(f"{w}/eval_cfg{g}.json")
        u = e.get("uncertainty") or {}
        r["guidance"][g] = {**{k: acc(e, kk) for k, kk in (("all", None), ("top100", 100), ("top20", 20))},
                            "minus_ridge": {"all": versus(e, None), "top100": versus(e, 100)},
                            "coverage_raw": {round(x["level"] * 100): x["covered"] for x in u.get("coverage", [])},
                            "crps": u.get("crps"),
                            # median over genes of the draws' sd ÷ the learned residuals' sd
                            "spread": load(sp)["median_draw_sd_over_loo_residual_sd"]
                            if os.path.exists(sp := f"{w}/spread_cfg{g}.json") else None}
    rows.append(r)
ms = lambda xs: (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)
summary = {f"{m}_{k}": ms([r[m][k] for r in rows]) for m in ("ridge", "oracle") for k in ("all", "top100", "top20")}
for g in cfgs:
    for k in ("all", "top100", "top20"):
        summary[f"cfg{g}_{k}"] = ms([r["guidance"][g][k] for r in rows])
    for k in ("all", "top100"):
        summary[f"cfg{g}_minus_ridge_{k}"] = ms([r["guidance"][g]["minus_ridge"][k][0] for r in rows])
    summary[f"cfg{g}_crps"] = ms([r["guidance"][g]["crps"] for r in rows])
json.dump({"draws": int(draws), "recipe": recipe or "trainer defaults", "cfgs": cfgs, "cohorts": rows,
           "summary": summary}, open(f"{out}/trial.json", "w"), indent=1)
f = lambda x: f"{x:.3f}"
L = [f"# trial-ridge-residual: {len(rows)} cohort(s), recipe: {recipe or 'trainer defaults'}, {draws} draws", "",
     "| cohort | model | r all | r top 100 | r top 20 | minus ridge, all (95% CI) | minus ridge, top 100 (95% CI) | cov 50/80/90 raw | CRPS | draw sd ÷ residual sd |",
     "|---|---|---:|---:|---:|---|---|---|---:|---:|"]
ci = lambda d: f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
for r in rows:
    for g in cfgs:
        a = r["guidance"][g]
        cv = "/".join(f"{100 * a['coverage_raw'].get(l, float('nan')):.0f}" for l in (50, 80, 90))
        L.append(f"| {r['cohort']} | ridge + residual flow, guidance {g} | {f(a['all'])} | {f(a['top100'])} | {f(a['top20'])} | {ci(a['minus_ridge']['all'])} | {ci(a['minus_ridge']['top100'])} | {cv} | {f(a['crps'])} | {'n/a' if a['spread'] is None else f(a['spread'])} |")
    for m, label in (("ridge", "ridge (summaries)"), ("oracle", "oracle")):
        b = r[m]
        L.append(f"| | {label} | {f(b['all'])} | {f(b['top100'])} | {f(b['top20'])} | | | | | |")
L += ["", "| mean ± sd | r all | r top 100 | r top 20 | minus ridge, all | minus ridge, top 100 | CRPS |", "|---|---:|---:|---:|---:|---:|---:|"]
pm = lambda t: f"{t[0]:.3f} ± {t[1]:.3f}"
spm = lambda t: f"{t[0]:+.3f} ± {t[1]:.3f}"
for g in cfgs:
    L.append(f"| guidance {g} | " + " | ".join(pm(summary[f"cfg{g}_{k}"]) for k in ("all", "top100", "top20"))
             + f" | {spm(summary[f'cfg{g}_minus_ridge_all'])} | {spm(summary[f'cfg{g}_minus_ridge_top100'])} | {pm(summary[f'cfg{g}_crps'])} |")
for m in ("ridge", "oracle"):
    L.append(f"| {m} | " + " | ".join(pm(summary[f"{m}_{k}"]) for k in ("all", "top100", "top20")) + " | | | |")
L += ["", "Training and export, fold 0 and the unused fold 1 (minutes): " + ", ".join(f"cohort {r['cohort']} {r['train_export_minutes']:.1f}" for r in rows)]
open(f"{out}/trial.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
