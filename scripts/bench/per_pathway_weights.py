"""What fewer weight bytes would give the per-pathway products with ONNX Runtime's kernels.

Usage: per_pathway_weights.py PATHWAYS.json [THREADS]
PATHWAYS.json: the GO-MF gene sets (../shared/data/reference-cohorts/
all_gene_indices_molecular_function.json); its 380 pathways' sizes (2 to 16,674 genes,
231,304 memberships) shape a product like embed.onnx's first per-pathway linear (each
pathway's genes to 256), 237 MB of float32 weights, in these forms:
  - fp32 buckets: as the bundles hold it (exporter/src/packing.rs: pathways sorted by size,
    padded within 1.25x + 8 genes, one batched MatMul per bucket, weights as the left operand);
  - fp32 per pathway: one 2-D MatMul per pathway, the weights as the right operand, which
    ONNX Runtime packs at load (the node count the next form needs);
  - 8-bit and 4-bit weights per pathway: com.microsoft.MatMulNBits (weight-only, symmetric,
    blocks of 32 along the genes, activations quantised per block: accuracy_level 4), a
    contrib operator the plain onnxruntime wheel runs; it takes one 2-D weight, so one node
    per pathway.
Each graph holds two copies of its product (different weights) and runs both on the same
input, so that the weights come from memory (474 MB of fp32 weights, above the 300 MB L3
these machines report) rather than cache; a product's time is half a run's. (Two sessions
run in turn would not do: each has its own spinning thread pool, and the idle one takes
cores from the other.) Prints the median ms per product at 2 rows (what one draw gives a
per-pathway graph) and 20 (ten draws' heads), the weight bytes read per second and the other
forms' error against the buckets (max |diff| over the output's rms). README: "Tried for one
draw".
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

H, BLOCK, RATIO, SLACK = 256, 32, 1.25, 8
sets = json.load(open(sys.argv[1]))
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
sizes = [len(v) for k, v in sets.items() if k not in ("UNMAPPED", "UNCLASSIFIED")]
total = sum(sizes)


def buckets():
    """exporter/src/packing.rs's buckets: lists of pathway indices and their padded width.
    Written again here so that the script needs no bundle; the bundles' own bucket products
    are timed in bench-run's profiled runs (about 17 ms a call for the first linear at one
    draw, against this script's 18 ms)."""
    out, start = [], 0
    for i in sorted(range(len(sizes)), key=lambda i: (sizes[i], i)):
        if out and sizes[i] <= start * RATIO + SLACK:
            out[-1][0].append(i)
            out[-1][1] = max(out[-1][1], sizes[i])
        else:
            start = sizes[i]
            out.append([[i], sizes[i]])
    return out


def session(nodes, inits, x_shape, outputs):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, None) for y in outputs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                          ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def quantise(w, bits):
    """MatMulNBits' layout for W [K, N]: uint8 [N, K/BLOCK, BLOCK·bits/8] (zero point
    2^(bits-1), low nibble first at 4 bits) and float scales [N·K/BLOCK]."""
    k, n = w.shape
    kb = -(-k // BLOCK)
    wt = np.zeros((n, kb * BLOCK), np.float32)
    wt[:, :k] = w.T
    wt = wt.reshape(n, kb, BLOCK)
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(wt).max(axis=2) / qmax
    scale[scale == 0] = 1
    q = (np.clip(np.rint(wt / scale[:, :, None]), -qmax, qmax) + 2 ** (bits - 1)).astype(np.uint8)
    if bits == 4:
        q = q[:, :, 0::2] | (q[:, :, 1::2] << 4)
    return q, scale.reshape(-1).astype(np.float32)


def per_pathway(copies, form):
    """x [B, total] → y0, y1 [B, P·H], one per copy of the weights: one node per pathway."""
    split = numpy_helper.from_array(np.array(sizes, dtype=np.int64), "split")
    parts = [f"x{i}" for i in range(len(sizes))]
    nodes, inits = [helper.make_node("Split", ["x", "split"], parts, axis=1)], [split]
    for c, weights in enumerate(copies):
        for i, w in enumerate(weights):
            if form == "fp32":
                inits.append(numpy_helper.from_array(w, f"w{c}_{i}"))
                nodes.append(helper.make_node("MatMul", [parts[i], f"w{c}_{i}"], [f"y{c}_{i}"]))
            else:
                q, s = quantise(w, form)
                inits += [numpy_helper.from_array(q, f"q{c}_{i}"), numpy_helper.from_array(s, f"s{c}_{i}")]
                nodes.append(helper.make_node("MatMulNBits", [parts[i], f"q{c}_{i}", f"s{c}_{i}"], [f"y{c}_{i}"],
                                              domain="com.microsoft", K=w.shape[0], N=H, bits=form,
                                              block_size=BLOCK, accuracy_level=4))
        nodes.append(helper.make_node("Concat", [f"y{c}_{i}" for i in range(len(sizes))], [f"y{c}"], axis=1))
    return session(nodes, inits, ["B", total], [f"y{c}" for c in range(len(copies))])


def bucketed(copies):
    """x [Σ n·s, B] (each bucket's members padded to its width) → y0, y1 [P, H, B] in bucket
    order, one per copy of the weights."""
    bks = buckets()
    split = numpy_helper.from_array(np.array([len(p) * s for p, s in bks], dtype=np.int64), "split")
    parts = [f"x{b}" for b in range(len(bks))]
    nodes, inits = [helper.make_node("Split", ["x", "split"], parts, axis=0)], [split]
    for b, (pw, s) in enumerate(bks):
        inits.append(numpy_helper.from_array(np.array([len(pw), s, -1], dtype=np.int64), f"shape{b}"))
        nodes.append(helper.make_node("Reshape", [parts[b], f"shape{b}"], [f"r{b}"]))
    for c, weights in enumerate(copies):
        for b, (pw, s) in enumerate(bks):
            wb = np.zeros((len(pw), H, s), np.float32)
            for j, p in enumerate(pw):
                wb[j, :, : sizes[p]] = weights[p].T
            inits.append(numpy_helper.from_array(wb, f"w{c}_{b}"))
            nodes.append(helper.make_node("MatMul", [f"w{c}_{b}", f"r{b}"], [f"y{c}_{b}"]))
        nodes.append(helper.make_node("Concat", [f"y{c}_{b}" for b in range(len(bks))], [f"y{c}"], axis=0))
    order = [p for pw, _ in bks for p in pw]
    return session(nodes, inits, [int(sum(len(p) * s for p, s in bks)), "B"],
                   [f"y{c}" for c in range(len(copies))]), bks, order


def bucket_input(x, bks):
    """x [B, total] (pathways in order) laid out as `bucketed` reads it."""
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows = []
    for pw, s in bks:
        for p in pw:
            block = np.zeros((s, x.shape[0]), np.float32)
            block[: sizes[p]] = x[:, starts[p]:starts[p + 1]].T
            rows.append(block)
    return np.concatenate(rows)


def main():
    rng = np.random.default_rng(0)
    copies = [[(rng.standard_normal((s, H), dtype=np.float32) / np.float32(np.sqrt(s))) for s in sizes] for _ in range(2)]
    forms = {"fp32 buckets": bucketed(copies), "fp32 per pathway": per_pathway(copies, "fp32"),
             "8-bit per pathway": per_pathway(copies, 8), "4-bit per pathway": per_pathway(copies, 4)}
    del copies
    fp32_bytes = total * H * 4
    print(f"{len(sizes)} pathways, {total} memberships, {fp32_bytes / 1e6:.0f} MB of fp32 weights per copy, "
          f"{threads} threads")
    for rows in (2, 20):
        x = rng.standard_normal((rows, total), dtype=np.float32)
        ref = None
        for name, form in forms.items():
            if name == "fp32 buckets":
                sess, bks, order = form
                feed = {"x": bucket_input(x, bks)}
                # [P, H, B] in bucket order → [B, P·H] in pathway order.
                out = lambda y: y[np.argsort(order)].transpose(2, 0, 1).reshape(rows, -1)
            else:
                sess, feed, out = form, {"x": x}, lambda y: y
            sess.run(None, feed)
            times = []
            for _ in range(10):
                t = time.perf_counter()
                sess.run(None, feed)
                times.append((time.perf_counter() - t) / 2)
            y = out(sess.run(["y0"], feed)[0])
            if ref is None:
                ref = y
            err = np.abs(y - ref).max() / np.sqrt((ref ** 2).mean())
            ms = float(np.median(times)) * 1e3
            stored = fp32_bytes if name.startswith("fp32") else fp32_bytes * int(name[0]) / 32
            print(f"{rows:2d} rows  {name:18s} {ms:7.2f} ms  {fp32_bytes / ms / 1e6:5.1f} GB/s fp32-equivalent, "
                  f"{stored / ms / 1e6:5.1f} GB/s of its own bytes;  max |diff| {err:.1e} of the rms", flush=True)


if __name__ == "__main__":
    main()
