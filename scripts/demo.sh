#!/usr/bin/env bash
# The main job end to end on the built-in demo, in a few minutes on 2 CPU cores: the quick
# version of scripts/report (see there for the steps):
#   synth → 2-fold CV training of RNA-FM and the regression baseline → interval calibration on
#   fold 0's validation patients → export → rnafm-run (100 draws per held-out slide of fold 0;
#   the main row calibrated cross-fitted: each half of those slides on the validation patients
#   plus the other half) → evaluate → one table (RNA-FM, baseline, oracle) with the issue's
#   checks, plus PNG plots.
# Everything lands in demo-out/ (git-ignored). Set DEMO_OUT to write elsewhere.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${DEMO_OUT:-$root/demo-out}

scripts/setup.sh
export ORT_DYLIB_PATH="$root/.ort/libonnxruntime.so"
cargo build --workspace --bins --locked
bin="$root/target/debug"

RNAFM_BIN="$bin" scripts/report --quick --out "$out"
echo "outputs: $out (summary.md, plots; bundle, draws and evaluations in $out/work)" >&2
