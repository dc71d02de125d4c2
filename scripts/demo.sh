#!/usr/bin/env bash
# The main job end to end on the built-in demo, in a few minutes on 2 CPU cores:
#   1. rnafm-train synth     a known-truth synthetic cohort in the real file formats
#   2. rnafm-train train     2-fold patient-level cross-validation (burn, CPU)
#   3. rnafm-export --onnx   fold 0's best EMA checkpoint → demo-out/model.rnafm
#   4. rnafm-run             100 guided samples per held-out slide on ONNX Runtime
#   5. rnafm-train evaluate  accuracy and calibration of those predictions vs truth and oracle
# Everything lands in demo-out/ (git-ignored). Set DEMO_OUT to write elsewhere.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${DEMO_OUT:-$root/demo-out}

scripts/setup.sh
export ORT_DYLIB_PATH="$root/.ort/libonnxruntime.so"
cargo build --workspace --bins --locked
bin="$root/target/debug"

rm -rf "$out"
mkdir -p "$out"
echo "== 1. synthetic cohort" >&2
"$bin/rnafm-train" synth --out "$out/cohort" --patients 64 --seed 0
echo "== 2. train (2-fold CV)" >&2
"$bin/rnafm-train" train --csv "$out/cohort/reference.csv" --features "$out/cohort/features" \
  --pathways "$out/cohort/pathways.json" --genes "$out/cohort/gene_list.csv" --out "$out/train" \
  --folds 2 --epochs 400 --hidden 64 --depth 2 --heads 4 --batch 16 --lr 1e-3 --val-every 25 --patience 4
echo "== 3. export" >&2
"$bin/rnafm-export" --onnx "$out/train/fold_0/best" --training-features "$out/cohort/features" -o "$out/model.rnafm"
"$bin/rnafm-run" --self-test --model "$out/model.rnafm"
echo "== 4. run on fold 0's held-out slides" >&2
slides=()
while read -r s; do slides+=("$out/cohort/features/$s.npy"); done < "$out/train/fold_0/heldout.txt"
"$bin/rnafm-run" "${slides[@]}" --model "$out/model.rnafm" --samples 100 --save-samples --out "$out/pred"
echo "== 5. evaluate" >&2
"$bin/rnafm-train" evaluate --pred "$out/pred" --truth "$out/cohort/reference.csv" \
  --genes "$out/cohort/gene_list.csv" --oracle "$out/cohort/oracle.npz" --present-only \
  --out "$out/evaluation.json"
echo "outputs: $out (per-slide *.genes.tsv / *.pathways.tsv in $out/pred)" >&2
