"""How ONNX Runtime's CPU MatMul streams a large weight at 1, 2 and 20 rows, in both
orientations the per-pathway products could take (exporter/src/embed_graph.rs).

Usage: matmul_rows.py [THREADS]
A [64, 256, 4096] float32 weight (268 MB, about a bucket of the paper config's per-pathway
weights) times [64, 4096, B] (weights as the left operand, as the bundles hold them), and
[64, B, 4096] times the weight stored as [64, 4096, 256]. Prints ms per product, the weight
bytes streamed per second, and the floating-point rate; numpy's one-thread sum of a 512 MB
array is printed beside them as a reading-speed reference.
"""
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
n, s, h = 64, 4096, 256


def timed(f, reps=5):
    f()
    t = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t) / reps


a = np.ones(128 * 1024 * 1024, dtype=np.float32)
print(f"numpy sum, 1 thread: {a.nbytes / timed(a.sum) / 1e9:.1f} GB/s")
rng = np.random.default_rng(0)
for label, w_shape, x_shape, y_shape, order in (
    ("weights left  W[n,h,s] @ x[n,s,B]", (n, h, s), (n, s, "B"), (n, h, "B"), ("w", "x")),
    ("weights right x[n,B,s] @ W[n,s,h]", (n, s, h), (n, "B", s), (n, "B", h), ("x", "w")),
):
    w = rng.random(w_shape, dtype=np.float32)
    g = helper.make_graph([helper.make_node("MatMul", list(order), ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
                          [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for b in (1, 2, 20):
        x = rng.random([b if d == "B" else d for d in x_shape], dtype=np.float32)
        dt = timed(lambda: sess.run(None, {"x": x}))
        print(f"{label}, B {b:2d}, {threads} threads: {dt * 1e3:6.1f} ms, "
              f"{w.nbytes / dt / 1e9:5.1f} GB/s of weights, {2 * w.size * b / dt / 1e9:6.1f} GFLOP/s")
