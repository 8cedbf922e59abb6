#!/bin/bash
# slot B, reordered at 21:44 (slot-b2.sh stopped while waiting): DLB with CutMix on the best set first, then the fresh
# model with DLB, Avalanche's experience replay with DLBPlugin, DLB on the random and the seed-1 sets, KD + DLB
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
while kill -0 4432 2>/dev/null; do sleep 10; done   # downstream cl --objective ce (slot-b.sh's first command)
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu"
BEST0="--out benchmarks/runs/t/dlb-sets --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors"
BEST1="--out benchmarks/runs/t/dlb-sets-seed1 --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed1/synthetic.safetensors"
$P $BEST0 --rows ours-best --columns cpu:hard:dlb-official-cutmix >> $R/dlb-sets.log 2>&1
CL="downstream cl --data ../shared/data/cifar10 --memory random,condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0,1 --no-progress --device cpu"
$CL --epochs 100 --objective dlb --out benchmarks/runs/t/cl-dlb > $R/cl-dlb.log 2>&1
$CL --strategy replay --stream-epochs 2 --objective ce --out benchmarks/runs/t/replay-ce > $R/replay-ce.log 2>&1
$CL --strategy replay --stream-epochs 2 --objective dlb --out benchmarks/runs/t/replay-dlb > $R/replay-dlb.log 2>&1
$P $BEST0 --rows random --columns cpu:hard,cpu:hard:dlb-official-cutmix,cpu:hard:dlb-official,cpu:hard:dlb-paper,cpu:hard:ce-nocutmix >> $R/dlb-sets.log 2>&1
$P $BEST1 --rows ours-best --columns cpu:hard:dlb-official-cutmix,cpu:hard:dlb-official,cpu:hard:dlb-paper,cpu:hard:ce-nocutmix >> $R/dlb-sets.log 2>&1
$P $BEST0 --rows random,ours-best --columns cpu:soft:dlb-official-cutmix >> $R/dlb-sets.log 2>&1
