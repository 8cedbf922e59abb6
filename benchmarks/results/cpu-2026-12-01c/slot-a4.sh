#!/bin/bash
# slot A at 22:30 (slot-a3.sh stopped during its cpu:soft command, pid 8050, which runs on): the ensemble teacher, CE
# for twice the epochs (DLB's equal-time baseline, issue 17 item 1), then T = 4 as far as the session allows
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
while kill -0 8050 2>/dev/null; do sleep 10; done
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu --best benchmarks/runs/lead/lr1e-2-seed0"
$P --out benchmarks/runs/t/teacher-ensemble --teacher pools/cifar10-convnet-2x1ep-11d062a7ac --rows random,ours-best --columns cpu:soft >> $R/teachers.log 2>&1
$P --out benchmarks/runs/t/ce-2x --epochs 600 --rows random,ours-best --columns cpu:hard >> $R/dlb-sets.log 2>&1
$P --out benchmarks/runs/t/teacher-T4 --temperature 4 --rows random,ours-best --columns cpu:soft >> $R/teachers.log 2>&1
