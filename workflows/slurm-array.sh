#!/usr/bin/env bash
# Plain Slurm without Snakemake: one array task per share of the slides, each a single
# rnafm-run that loads the model once and runs every n-th slide (--shard i/n).
#   sbatch --array=0-31 workflows/slurm-array.sh FEATURES/ model.rnafm results/
# Task i writes its slides and its run.json into OUT/shard-<i>/. Resubmitting the array
# redoes only slides without outputs (rnafm-run skips those that have them).
#SBATCH --job-name=rnafm
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=04:00:00
set -euo pipefail
features=${1:?usage: sbatch --array=0-N workflows/slurm-array.sh FEATURES/ MODEL OUT/}
model=${2:?model bundle}
out=${3:?output folder}
i=${SLURM_ARRAY_TASK_ID:?run under sbatch --array}
n=${SLURM_ARRAY_TASK_COUNT:?run under sbatch --array}
exec rnafm-run "$features" --model "$model" --out "$out/shard-$i" --shard "$i/$n" \
  --threads "${SLURM_CPUS_PER_TASK:-2}"
