#!/usr/bin/env bash
# Sets up everything the tests need (ONNX Runtime from PyPI, the `onnx` checker, the test
# slide) and runs the whole suite: formatting, lints, unit, parity and end-to-end tests.
# Used as-is by .ci/run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/setup.sh --check-tools
scripts/fetch-test-slide
scripts/slide-pixels-ref
export ORT_DYLIB_PATH="$root/.ort/libonnxruntime.so"
# rnafm-run remembers bundles it has checked (runtime/src/checked_cache.rs); keep the tests'
# records out of the user's cache.
export RNAFM_CACHE_DIR="${RNAFM_CACHE_DIR:-$(mktemp -d)}"

cargo fmt --all --check
# One lint pass over everything, the CUDA trainer's own code (its device probe) included: a
# second pass with only `--features cuda` changed re-checked almost every crate (serde's `rc`
# and burn's cubecl features change with it) for the ten-line non-CUDA stub it leaves out.
cargo clippy --workspace --all-targets --features rnafm-trainer/cuda --locked -- -D warnings
# The runtime without libhdf5 (--no-default-features: .h5 refused in one line) still builds.
cargo clippy -p rnafm-runtime --no-default-features --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The exporter and the evaluation crate carry no training code (burn autodiff, the training
# kernels, the trainer; for the exporter also plotting): they build for workstations.
if cargo tree -p rnafm-exporter -e normal --locked | grep -E 'burn-autodiff|plotters|rnafm-kernels|rnafm-trainer'; then
  echo "test.sh: rnafm-exporter depends on training code (above)" >&2; exit 1
fi
if cargo tree -p rnafm-eval -e normal --locked | grep -E 'burn|rnafm-kernels|rnafm-trainer'; then
  echo "test.sh: rnafm-eval depends on burn (above)" >&2; exit 1
fi
# The GPU check (scripts/gpu-check, run for real on a lent GPU machine): without a GPU it
# refuses in one line within seconds; its whole flow runs here at toy sizes on the CPU.
checks=$(mktemp -d)
if [ ! -e /proc/driver/nvidia/version ]; then
  rc=0; msg=$(timeout 20 scripts/gpu-check "$checks/nogpu" 2>&1) || rc=$?
  if [ "$rc" != 3 ] || [ "$(printf '%s\n' "$msg" | wc -l)" != 1 ] || [[ $msg != *"no GPU"* ]]; then
    echo "test.sh: gpu-check without a GPU gave exit $rc and: $msg" >&2; exit 1
  fi
fi
# `cargo test --workspace` built every binary into target/debug (each crate with binaries has
# integration tests that run them). A `cargo build --bins` here built for 4-5 minutes more:
# without dev-dependencies, features of hashbrown, ahash, regex-automata and num-bigint
# differ, so they and the crates above them were built again.
scripts/gpu-check --simulate-on-cpu "$checks/simulated" > /dev/null
scripts/gpu-check --finish "$checks/simulated" > /dev/null
rm -rf "$checks"
# Paper-size ONNX-vs-burn agreement of a freshly trained model (about a minute).
scripts/paper-parity
# The CUDA trainer binaries built for real (burn-cuda 0.21 builds offline; 9-12 minutes in CI).
cargo build -p rnafm-trainer --features cuda --bins --locked
