"""What int8 gains on this CPU for the backbone's token-wise products, the only products the
int8 precision quantises (exporter/src/layers.rs, `weight_matmul`).

Usage: int8_products.py [THREADS]
Times, in ONNX Runtime at 10 guided draws' rows (20 x 381 tokens), the four products of a DiT
block at the paper config (q;k;v 256->768, fc1 256->1024, fc2 1024->256, proj 256->256) as
fp32 MatMul and as the DynamicQuantizeMatMul the int8 graphs fuse into, and the activation
quantisation alone; then MatMulInteger on already-quantised operands, the integer kernel's
own rate (AMX tiles, VNNI or AVX2, whichever MLAS picks here). Best of 10 runs each.
"""
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
rows, tokens = 20, 381
rng = np.random.default_rng(0)


def session(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.microsoft", 1)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def best(s, feed):
    s.run(None, feed)
    t = []
    for _ in range(10):
        t0 = time.perf_counter()
        s.run(None, feed)
        t.append(time.perf_counter() - t0)
    return min(t)


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


total = {"fp32": 0.0, "int8": 0.0}
for k, n in ((256, 768), (256, 1024), (1024, 256), (256, 256)):
    x = rng.standard_normal((rows, tokens, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    fp = session([helper.make_node("MatMul", ["x", "w"], ["y"])], [f32("x", x.shape)],
                 [f32("y", [rows, tokens, n])], [numpy_helper.from_array(w, "w")])
    wq = rng.integers(-127, 128, (k, n)).astype(np.int8)
    scale = np.full(n, 0.01, np.float32)
    dq = session([helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s"], ["y"],
                                   domain="com.microsoft")],
                 [f32("x", x.shape)], [f32("y", [rows, tokens, n])],
                 [numpy_helper.from_array(wq, "w"), numpy_helper.from_array(scale, "s")])
    qx = session([helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])],
                 [f32("x", x.shape)],
                 [helper.make_tensor_value_info("q", TensorProto.UINT8, list(x.shape))], [])
    ti = best(fp, {"x": x}), best(dq, {"x": x}), best(qx, {"x": x})
    total["fp32"] += ti[0]
    total["int8"] += ti[1]
    flop = 2 * rows * tokens * k * n
    print(f"{k:4d}->{n:4d}: fp32 MatMul {ti[0] * 1e3:6.2f} ms ({flop / ti[0] / 1e9:4.0f} GFLOP/s), "
          f"DynamicQuantizeMatMul {ti[1] * 1e3:6.2f} ms ({ti[0] / ti[1]:.2f}x), "
          f"of which quantising x {ti[2] * 1e3:5.2f} ms")
print(f"one block's four products: fp32 {total['fp32'] * 1e3:.1f} ms, int8 {total['int8'] * 1e3:.1f} ms "
      f"({total['fp32'] / total['int8']:.2f}x)")

m, k, n = rows * tokens, 256, 1024
xq = rng.integers(0, 256, (m, k)).astype(np.uint8)
wq = rng.integers(-127, 128, (k, n)).astype(np.int8)
mi = session([helper.make_node("MatMulInteger", ["x", "w"], ["y"])],
             [helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])],
             [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
             [numpy_helper.from_array(wq, "w")])
w = rng.standard_normal((k, n)).astype(np.float32)
fp = session([helper.make_node("MatMul", ["x", "w"], ["y"])], [f32("x", [m, k])], [f32("y", [m, n])],
             [numpy_helper.from_array(w, "w")])
tq = best(mi, {"x": xq})
tf = best(fp, {"x": rng.standard_normal((m, k)).astype(np.float32)})
print(f"integer kernel alone ({m}x{k}x{n}, u8 x s8): {2 * m * k * n / tq / 1e9:.0f} GOP/s against fp32 "
      f"{2 * m * k * n / tf / 1e9:.0f} GFLOP/s ({tf / tq:.2f}x)")
