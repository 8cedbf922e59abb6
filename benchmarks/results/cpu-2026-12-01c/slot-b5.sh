#!/bin/bash
# slot B, cut at 22:12 to what fits the session: DLB on the random set (its CE cell is the protocol table's, the same
# set and protocol), the fresh model with DLB (2 seeds), experience replay with the condensed memory with and without
# DLBPlugin (seed 0), then seed 1's set with DLB + CutMix if time is left
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
while kill -0 6883 2>/dev/null; do sleep 10; done   # ours-best cpu:hard:dlb-official-cutmix
python benchmarks/runs/t/copy_cell.py benchmarks/runs/t/protocols benchmarks/runs/t/dlb-sets random cpu:hard
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu"
BEST0="--out benchmarks/runs/t/dlb-sets --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors"
BEST1="--out benchmarks/runs/t/dlb-sets-seed1 --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed1/synthetic.safetensors"
$P $BEST0 --rows random --columns cpu:hard:dlb-official-cutmix,cpu:hard:dlb-official,cpu:hard:ce-nocutmix >> $R/dlb-sets.log 2>&1
CL="downstream cl --data ../shared/data/cifar10 --no-progress --device cpu"
$CL --memory random,condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0,1 --epochs 100 --objective dlb --out benchmarks/runs/t/cl-dlb > $R/cl-dlb.log 2>&1
$CL --memory condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0 --strategy replay --stream-epochs 2 --objective ce --out benchmarks/runs/t/replay-ce > $R/replay-ce.log 2>&1
$CL --memory condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0 --strategy replay --stream-epochs 2 --objective dlb --out benchmarks/runs/t/replay-dlb > $R/replay-dlb.log 2>&1
$P $BEST1 --rows ours-best --columns cpu:hard:dlb-official-cutmix >> $R/dlb-sets.log 2>&1
