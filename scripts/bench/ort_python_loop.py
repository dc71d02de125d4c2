"""The peer rnafm-run is measured against: what a user would write with the `onnxruntime`
wheel and a bundle's ONNX graphs. It reads the graphs from the bundle, runs the slide encoder
and every modulation once, then the Euler loop with classifier-free guidance over embed,
backbone and heads: the same graphs, products and batch (10) as rnafm-run, in plain numpy.
The noise is numpy's, so the numbers differ from rnafm-run's draws; the work does not.

    python ort_python_loop.py BUNDLE.rnafm FEATURES.npy SAMPLES PRECISION THREADS

Prints one JSON line: load_s, sampling_s, peak_rss_kb.
"""
import io
import json
import resource
import sys
import time
import zipfile

import numpy as np
import onnxruntime as ort


def grid(points):
    # torch.linspace(0, 1, points) in float32, as the official sampler and rnafm-run use.
    step = np.float32(1.0) / np.float32(points - 1)
    half = points // 2
    return np.array([step * i if i < half else 1 - step * (points - 1 - i) for i in range(points)],
                    dtype=np.float32)


def main():
    bundle, features, samples, precision, threads = sys.argv[1:6]
    samples, threads = int(samples), int(threads)
    steps, cfg, batch = 20, 2.0, 10
    t0 = time.perf_counter()
    z = zipfile.ZipFile(bundle)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    member = {"backbone": "backbone.int8.onnx"} if precision == "int8" else {}
    s = {g: ort.InferenceSession(z.read(member.get(g, g + ".onnx")), so,
                                 providers=["CPUExecutionProvider"])
         for g in ["condition", "modulation", "embed", "backbone", "heads"]}
    null = np.load(io.BytesIO(z.read("null_slide_emb.npy"))).astype(np.float32).reshape(1, -1)
    load_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    feats = np.load(features).astype(np.float32)[None]
    emb = s["condition"].run(["slide_emb"], {"features": feats})[0]
    g = grid(steps)
    ts = np.repeat(g[:-1], 2).astype(np.float32)
    embs = np.concatenate([np.concatenate([emb, null]) for _ in g[:-1]]).astype(np.float32)
    block_mod, head_mod, bg_mod = s["modulation"].run(
        ["block_mod", "head_mod", "bg_mod"], {"t": ts, "slide_emb": embs})
    genes = s["heads"].get_outputs()[0].shape[1]
    rng = np.random.default_rng(0)
    chunks = -(-samples // batch)
    sizes = [samples // chunks + (1 if i < samples % chunks else 0) for i in range(chunks)]
    for n in sizes:
        x = rng.standard_normal((n, genes), dtype=np.float32)
        # The graphs are not run on one row (see rnafm's sampler): pad a lone draw.
        rows = max(n, 2)
        for i in range(steps - 1):
            xin = x if n == rows else np.concatenate([x, x])[:rows]
            tok, bg = s["embed"].run(["tokens", "bg_token"], {"x": xin})
            tok, bg = tok[:n], bg[:n]
            pick = lambda a: np.concatenate([np.repeat(a[2 * i:2 * i + 1], n, 0),
                                             np.repeat(a[2 * i + 1:2 * i + 2], n, 0)])
            out = s["backbone"].run(["tokens_out"], {"tokens": np.concatenate([tok, tok]),
                                                     "block_mod": pick(block_mod)})[0]
            v = s["heads"].run(["v"], {"tokens_out": out, "bg_token": np.concatenate([bg, bg]),
                                       "head_mod": pick(head_mod), "bg_mod": pick(bg_mod)})[0]
            vc, vu = v[:n], v[n:]
            x = x + (g[i + 1] - g[i]) * (vu + cfg * (vc - vu))
    sampling_s = time.perf_counter() - t1
    print(json.dumps({"load_s": load_s, "sampling_s": sampling_s,
                      "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "mean": float(x.mean())}))


if __name__ == "__main__":
    main()
