#!/usr/bin/env python3
"""Writes a training-checkpoint-style torch.save file without torch, for import tests.

Usage: torch-nested-checkpoint.py STATE_DICT.pt OUT.pt [MODE]

MODE (default nested) picks the layout written:
  nested      {"model", "ema", "epoch", "args"} (below)
  module      the state_dict with every key prefixed "module." (DataParallel)
  state_dict  {"state_dict": state_dict, "epoch": 7}
  ema-only    {"ema": state_dict, "epoch": 7}
  big-endian  the state_dict, with the archive's byteorder record saying "big"

Reads a torch.save (zip) state_dict and writes (nested) {"model": state_dict with every float
parameter scaled by 2 (buffers: empty_cond, *mask, kept), "ema": the state_dict unchanged, "epoch": 7, "args": {...}} in the same
layout torch.save uses: pickle protocol 2 with persistent ids
('storage', FloatStorage, key, 'cpu', numel) and the storages as <name>/data/<key>.
Only the standard library is used, so tests can run it where torch is not installed.
"""
import io
import os
import pickle
import struct
import sys
import zipfile


class Global:
    """Stands for a torch/collections global (pickled back under its own name)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    """A REDUCE (callable, args) kept as is so it re-pickles identically."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


class Reader(pickle.Unpickler):
    def find_class(self, module, name):
        g = Global(module, name)
        # A callable stub whose calls are recorded, so _rebuild_tensor_v2(...) and
        # OrderedDict() survive as Call objects.
        return type(name, (), {"__new__": lambda cls, *a: Call(g, a), "_g": g})

    def persistent_load(self, pid):
        return ("PID", pid)


class Writer(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "PID":
            return obj[1]
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Call):
            return (obj.fn, obj.args)
        return NotImplemented


def stub(g):
    """A stand-in that pickles as GLOBAL module.name (real modules keep their own)."""
    parts = g.module.split(".")
    for i in range(1, len(parts) + 1):  # torch._utils needs a `torch` parent
        sys.modules.setdefault(".".join(parts[:i]), type(sys)(".".join(parts[:i])))
    fn = type(g.name, (), {})
    fn.__module__, fn.__qualname__ = g.module, g.name
    if not hasattr(sys.modules[g.module], g.name):
        setattr(sys.modules[g.module], g.name, fn)
    return getattr(sys.modules[g.module], g.name)


def buffer(name):
    """Buffers (the null condition, graph masks) are the same in `model` and `ema`."""
    return name == "empty_cond" or name.endswith("mask")


def fix(obj, scaled, storages, out):
    """Rewrites stubs into picklable globals; with `scaled`, points each tensor at a new
    storage holding its data × 2."""
    if isinstance(obj, dict):
        return {k: fix(v, scaled and not buffer(k), storages, out) for k, v in obj.items()}
    if isinstance(obj, tuple):
        if len(obj) == 2 and obj[0] == "PID":
            pid = list(obj[1])
            kind = pid[1]._g
            pid[1] = stub(kind)
            if scaled and kind.name == "FloatStorage":
                key = pid[2]
                new = f"{key}s"
                raw = storages[key]
                vals = struct.unpack(f"<{len(raw) // 4}f", raw)
                out[new] = struct.pack(f"<{len(vals)}f", *(2.0 * v for v in vals))
                pid[2] = new
            return ("PID", tuple(pid))
        return tuple(fix(v, scaled, storages, out) for v in obj)
    if isinstance(obj, Call):
        fn = stub(obj.fn)
        return Call(fn, tuple(fix(a, scaled, storages, out) for a in obj.args))
    return obj


def main():
    src, dst = sys.argv[1], sys.argv[2]
    zin = zipfile.ZipFile(src)
    pkl = next(n for n in zin.namelist() if n.endswith("data.pkl"))
    prefix = pkl[: -len("data.pkl")]
    storages = {
        n[len(prefix) + len("data/"):]: zin.read(n)
        for n in zin.namelist()
        if n.startswith(prefix + "data/")
    }
    sd = Reader(io.BytesIO(zin.read(pkl))).load()
    extra = {}
    mode = sys.argv[3] if len(sys.argv) > 3 else "nested"
    if mode == "nested":
        ckpt = {
            "model": fix(sd, True, storages, extra),
            "ema": fix(sd, False, storages, extra),
            "epoch": 7,
            "args": {"hidden": 64, "note": "written by torch-nested-checkpoint.py"},
        }
    elif mode == "module":
        ckpt = {"module." + k: v for k, v in fix(sd, False, storages, extra).items()}
    elif mode == "state_dict":
        ckpt = {"state_dict": fix(sd, False, storages, extra), "epoch": 7}
    elif mode == "ema-only":
        ckpt = {"ema": fix(sd, False, storages, extra), "epoch": 7}
    elif mode == "big-endian":
        ckpt = fix(sd, False, storages, extra)
    else:
        sys.exit(f"unknown mode {mode}")
    buf = io.BytesIO()
    Writer(buf, protocol=2).dump(ckpt)
    name = "archive/"
    with zipfile.ZipFile(dst + ".tmp", "w", zipfile.ZIP_STORED) as z:
        z.writestr(name + "data.pkl", buf.getvalue())
        z.writestr(name + "byteorder", "big" if mode == "big-endian" else "little")
        z.writestr(name + ".format_version", "1")
        for k, v in {**storages, **extra}.items():
            z.writestr(name + "data/" + k, v)
        z.writestr(name + "version", "3\n")
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
