#!/bin/bash
# slot B at 23:34, the session's last half hour: KD + DLB on the random set, then DLB + CutMix on the seed-1 set
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu"
python benchmarks/runs/t/copy_cell.py benchmarks/runs/t/protocols benchmarks/runs/t/dlb-sets random cpu:soft
python benchmarks/runs/t/copy_cell.py benchmarks/runs/t/protocols benchmarks/runs/t/dlb-sets ours-best cpu:soft
$P --out benchmarks/runs/t/dlb-sets --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors --rows random \
  --columns cpu:soft:dlb-official-cutmix >> $R/dlb-sets.log 2>&1
$P --out benchmarks/runs/t/dlb-sets-seed1 --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed1/synthetic.safetensors --rows ours-best \
  --columns cpu:hard:dlb-official-cutmix >> $R/dlb-sets.log 2>&1
