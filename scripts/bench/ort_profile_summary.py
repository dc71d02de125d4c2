"""Where one rnafm-run spent its time, per graph and operator, from ONNX Runtime's profiles.

Usage: RNAFM_ORT_PROFILE=DIR/run rnafm-run … ; ort_profile_summary.py DIR/run
Prints, per graph (PREFIX-<graph>_<time>.json), the number of runs, the seconds of its runs
and of its kernels, and the operators that took the most kernel time. `scripts/bench-run`
imports `profiles` to split a run's kernel time by operator class.
"""
import collections
import glob
import json
import sys


def profiles(prefix):
    """Per graph: (the seconds of each of its runs, kernel seconds per operator type)."""
    out = {}
    for f in sorted(glob.glob(f"{prefix}-*.json")):
        graph = f[len(prefix) + 1:].rsplit("_", 3)[0]
        events = json.load(open(f))
        runs = [e["dur"] / 1e6 for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
        ops = collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                ops[e["args"]["op_name"]] += e["dur"] / 1e6
        out[graph] = (runs, ops)
    return out


def main():
    for graph, (runs, ops) in profiles(sys.argv[1]).items():
        top = ", ".join(f"{k} {v:.2f}" for k, v in ops.most_common(5))
        print(f"{graph:11s} {len(runs):4d} runs {sum(runs):7.2f} s, "
              f"kernels {sum(ops.values()):7.2f} s: {top}")


if __name__ == "__main__":
    main()
