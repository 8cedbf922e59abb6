#!/bin/bash
# slot B (issue 17 items 3, 4): continual learning with DLB vs CE, then DLB on the random set and the seed-1 set
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
CL="downstream cl --data ../shared/data/cifar10 --memory random,condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0,1 --epochs 100 --no-progress --device cpu"
$CL --objective ce --out benchmarks/runs/t/cl-ce > $R/cl-ce.log 2>&1
$CL --objective dlb --out benchmarks/runs/t/cl-dlb > $R/cl-dlb.log 2>&1
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu"
$P --out benchmarks/runs/t/dlb-sets --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors --rows random \
  --columns cpu:hard,cpu:hard:dlb-official,cpu:hard:dlb-paper,cpu:hard:ce-nocutmix >> $R/dlb-sets.log 2>&1
$P --out benchmarks/runs/t/dlb-sets-seed1 --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed1/synthetic.safetensors --rows ours-best \
  --columns cpu:hard:dlb-official,cpu:hard:dlb-paper,cpu:hard:ce-nocutmix >> $R/dlb-sets.log 2>&1
$P --out benchmarks/runs/t/dlb-sets --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors --rows random,ours-best \
  --columns cpu:soft,cpu:soft:dlb-official >> $R/dlb-sets.log 2>&1
