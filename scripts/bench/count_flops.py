"""Counts the floating-point work of a bundle's graphs from the graphs themselves.

Every matrix product (MatMul, MatMulInteger, Gemm) and fused attention
(com.microsoft.MultiHeadAttention) is found in the graph; ONNX Runtime runs the graph once
on ROWS rows with the inputs of those nodes added as outputs, so each product's operand
shapes are the real ones. A product of A [..., M, K] and B [..., K, N] counts 2·M·K·N per
batch element, attention 4·Lq·Lk·H per row (scores and weighted sum). Element-wise work is
left out (a few percent). Every count is linear in the rows, so the result is per row:
`flops_per_row` per graph, and `split_per_row` the same apart into products and attention.

`weight_bytes_per_call` per graph is what a call must read whatever its rows: the bytes of
the products' constant operands (the weights, int8 ones at a byte each). It sets the time
floor of calls on few rows, where a product does little work per weight it reads
(`scripts/bench-run`'s roofline).

    python count_flops.py BUNDLE.rnafm [--int8] > flops.json
"""
import io
import json
import sys
import zipfile

import numpy as np
import onnx
import onnxruntime as ort

PRODUCTS = {"MatMul", "MatMulInteger", "Gemm"}
ROWS = 2  # the sampler never runs a graph on fewer rows


def feeds(model, rows):
    out = {}
    for i in model.graph.input:
        t = i.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else rows for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        out[i.name] = (np.random.default_rng(0).random(dims) * 0.5).astype(dtype)
    return out


def count(model_bytes, rows=ROWS):
    model = onnx.load_from_string(model_bytes)
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    itemsize = {t.name: onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
                for t in model.graph.initializer}
    consts = {}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = list(a.t.dims)
                    itemsize[n.output[0]] = onnx.helper.tensor_dtype_to_np_dtype(a.t.data_type).itemsize
    wanted, nodes = [], []
    for n in model.graph.node:
        if n.op_type in PRODUCTS or n.op_type == "MultiHeadAttention":
            nodes.append(n)
            for x in n.input[:2]:
                if x and x not in inits and x not in consts and x not in wanted:
                    wanted.append(x)
    graph_inputs = {i.name for i in model.graph.input}
    probe = [x for x in wanted if x not in graph_inputs]
    elem = {}
    for n in nodes:
        for k, x in enumerate(n.input[:2]):
            # MatMulInteger's activations are quantised to uint8; everything else is float.
            elem[x] = onnx.TensorProto.UINT8 if n.op_type == "MatMulInteger" and k == 0 else onnx.TensorProto.FLOAT
    for x in probe:
        model.graph.output.append(onnx.helper.make_tensor_value_info(x, elem[x], None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    f = feeds(model, rows)
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: list(v.shape) for n, v in zip(names, sess.run(names, f))}
    shapes.update({k: list(v.shape) for k, v in f.items()})
    shapes.update(inits)
    shapes.update(consts)
    flops = attention = weight_bytes = 0.0
    for n in nodes:
        a, b = shapes[n.input[0]], shapes[n.input[1]]
        for x in n.input[:2]:
            if x in itemsize:
                weight_bytes += float(np.prod(shapes[x])) * itemsize[x]
        if n.op_type == "MultiHeadAttention":
            # query [B, Lq, H], key [B, Lk, H]
            attention += 4.0 * a[0] * a[1] * b[1] * a[2]
            continue
        if n.op_type == "Gemm":
            trans_a = any(x.name == "transA" and x.i for x in n.attribute)
            m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
            trans_b = any(x.name == "transB" and x.i for x in n.attribute)
            nn = b[0] if trans_b else b[1]
            flops += 2.0 * m * k * nn
            continue
        if len(a) == 1:
            a = [1] + a
        if len(b) == 1:
            b = b + [1]
        batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
        flops += 2.0 * float(np.prod(batch)) * a[-2] * a[-1] * b[-1]
    return {"products": flops / rows, "attention": attention / rows, "weight_bytes": weight_bytes}


def main():
    bundle = sys.argv[1]
    int8 = "--int8" in sys.argv
    z = zipfile.ZipFile(bundle)
    members = {
        "condition": "condition.onnx",
        "modulation": "modulation.onnx",
        "embed": "embed.onnx",
        "backbone": "backbone.int8.onnx" if int8 else "backbone.onnx",
        "heads": "heads.onnx",
    }
    split = {g: count(z.read(m)) for g, m in members.items()}
    per_row = {g: c["products"] + c["attention"] for g, c in split.items()}
    weights = {g: c.pop("weight_bytes") for g, c in split.items()}
    json.dump({"members": members, "flops_per_row": per_row, "split_per_row": split,
               "weight_bytes_per_call": weights}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
