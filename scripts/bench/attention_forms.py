"""Which form of a DiT block's self-attention ONNX Runtime's CPU provider runs fastest, at the
paper config (380 tokens, width 256, 8 heads) and the rows rnafm-run feeds the backbone.

Usage: attention_forms.py [ROWS ...] [--reps N] [--threads T]   (default rows: 2 20, reps 60)

Forms, each from the token input to the attention's output (before the output projection):
  split      one q;k;v product [W, 3W] + bias, Split three ways, MultiHeadAttention
             (the graphs before 2026-12-06's attention change)
  three      three products [W, W], the query bias only, MultiHeadAttention (the graphs now:
             the key bias drops out of softmax, the value bias joins the output bias)
  attention  com.microsoft.Attention, which takes the packed [W, 3W] weight itself
Tries are interleaved (one of each form in turn) so that the machine's drift hits all forms
alike; prints the median and the fastest try per form, and each form's largest difference
from `split` (the forms are the same arithmetic, so only rounding differs).
"""
import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

TOKENS, WIDTH, HEADS = 380, 256, 8


def session(nodes, inits, rows, threads):
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, TOKENS, WIDTH])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.microsoft", 1)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def forms(rows, threads):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((WIDTH, 3 * WIDTH)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(3 * WIDTH) * 0.1).astype(np.float32)
    q, k, v = (w[:, i * WIDTH:(i + 1) * WIDTH].copy() for i in range(3))
    mha = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft",
                           num_heads=HEADS)
    return {
        "split": session([
            helper.make_node("MatMul", ["x", "w"], ["p"]),
            helper.make_node("Add", ["p", "b"], ["pb"]),
            helper.make_node("Split", ["pb", "widths"], ["q", "k", "v"], axis=-1), mha],
            {"w": w, "b": b, "widths": np.array([WIDTH] * 3, np.int64)}, rows, threads),
        # Without the key bias the scores change by one constant per query, which softmax
        # ignores; the value bias comes out of the attention unchanged (its weights sum to 1),
        # so this form's output is `split`'s minus b_v.
        "three": session([
            helper.make_node("MatMul", ["x", "wq"], ["q0"]),
            helper.make_node("Add", ["q0", "bq"], ["q"]),
            helper.make_node("MatMul", ["x", "wk"], ["k"]),
            helper.make_node("MatMul", ["x", "wv"], ["v"]), mha],
            {"wq": q, "wk": k, "wv": v, "bq": b[:WIDTH].copy()}, rows, threads),
        "attention": session([
            helper.make_node("Attention", ["x", "w", "b"], ["o"], domain="com.microsoft",
                             num_heads=HEADS)], {"w": w, "b": b}, rows, threads),
    }, b[2 * WIDTH:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=int, nargs="*", default=[2, 20])
    ap.add_argument("--reps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    for rows in a.rows:
        s, bv = forms(rows, a.threads)
        x = np.random.default_rng(1).standard_normal((rows, TOKENS, WIDTH), dtype=np.float32)
        out = {n: f.run(None, {"x": x})[0] for n, f in s.items()}
        out["three"] = out["three"] + bv
        times = {n: [] for n in s}
        for _ in range(a.reps):
            for n, f in s.items():
                t0 = time.perf_counter()
                f.run(None, {"x": x})
                times[n].append(time.perf_counter() - t0)
        base = np.median(times["split"])
        for n in s:
            t = np.array(times[n])
            print(f"rows {rows:3d}  {n:9s}  median {1e3 * np.median(t):7.2f} ms "
                  f"({np.median(t) / base:.2f}x split)  fastest {1e3 * t.min():7.2f} ms  "
                  f"max|diff| from split {np.abs(out[n] - out['split']).max():.1e}")


if __name__ == "__main__":
    main()
