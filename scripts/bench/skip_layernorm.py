"""Whether ONNX Runtime's fused residual-add + LayerNorm would speed up the backbone.

Usage: skip_layernorm.py BUNDLE [PAIRS] [ROWS ...]
BUNDLE: an rnafm bundle (e.g. the paper-config one from
`RNAFM_KEEP_BUNDLE=/tmp/paper.rnafm scripts/bench-export`). Its backbone.onnx is rewritten
so that every LayerNormalization whose input is an Add becomes one
com.microsoft.SkipLayerNormalization (input, skip, gamma, beta; its fourth output is the sum,
which the next residual Add still reads). ONNX Runtime's own optimiser leaves these pairs
apart on our graphs. Both forms run in turn on the same random tokens and modulations, PAIRS
times (default 16) at each row count (default 20 = ten guided draws, and 2 = one), order
alternating; prints the max |diff| of the outputs and the medians and range of the paired
time ratios fused / current. Both sessions use 2 threads without spinning, so that the
idle one does not take cores from the other. README: "Tried on 2026-12-06 and not kept".
"""
import sys
import time
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

bundle = sys.argv[1]
pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 16
row_counts = [int(r) for r in sys.argv[3:]] or [20, 2]

current = onnx.load_from_string(zipfile.ZipFile(bundle).read("backbone.onnx"))
fused = onnx.ModelProto()
fused.CopyFrom(current)
nodes = list(fused.graph.node)
producer = {o: i for i, n in enumerate(nodes) for o in n.output}
drop, out = set(), []
for n in nodes:
    src = producer.get(n.input[0]) if n.op_type == "LayerNormalization" else None
    if src is None or nodes[src].op_type != "Add":
        continue
    add = nodes[src]
    eps = next(a.f for a in n.attribute if a.name == "epsilon")
    n.CopyFrom(helper.make_node(
        "SkipLayerNormalization", [add.input[0], add.input[1], n.input[1], n.input[2]],
        [n.output[0], "", "", add.output[0]], domain="com.microsoft", epsilon=eps))
    drop.add(src)
del fused.graph.node[:]
fused.graph.node.extend(n for i, n in enumerate(nodes) if i not in drop)
fused.opset_import.append(helper.make_opsetid("com.microsoft", 1))
print(f"fused {len(drop)} of {sum(n.op_type.endswith('LayerNormalization') for n in nodes)} LayerNorms")


def session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


forms = {"current": session(current), "fused": session(fused)}
dims = {i.name: i.type.tensor_type.shape.dim for i in current.graph.input}
rng = np.random.default_rng(0)
for rows in row_counts:
    feed = {name: (0.1 if name == "block_mod" else 1.0)
            * rng.standard_normal([rows] + [d.dim_value for d in dim[1:]], dtype=np.float32)
            for name, dim in dims.items()}
    outs = {k: s.run(None, feed)[0] for k, s in forms.items()}
    diff = float(np.abs(outs["fused"] - outs["current"]).max())
    t = {k: [] for k in forms}
    for p in range(pairs):
        for k in (["current", "fused"] if p % 2 == 0 else ["fused", "current"]):
            t0 = time.perf_counter()
            forms[k].run(None, feed)
            t[k].append(time.perf_counter() - t0)
    r = np.array(t["fused"]) / np.array(t["current"])
    print(f"{rows} rows: current {1e3 * np.median(t['current']):.1f} ms, fused "
          f"{1e3 * np.median(t['fused']):.1f} ms (medians); fused / current over {pairs} pairs: "
          f"median {np.median(r):.2f}, range {r.min():.2f}-{r.max():.2f}; max |diff| {diff:.1e}")
