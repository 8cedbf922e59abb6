#!/bin/bash
# slot A, cut at 22:12 to what fits the session (400-image cells take ~19 min here): after the ours-best row, soft
# labels beside random real + the same teacher, then the pool-ensemble teacher and T = 4 (issue 15 item 7)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
until grep -q "this project, best set (--best) | dc:hard" $R/protocols.log; do sleep 15; done
kill 4431; sleep 3
python benchmarks/runs/t/seed_init_cell.py
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu --best benchmarks/runs/lead/lr1e-2-seed0"
$P --out benchmarks/runs/t/protocols --rows random,ours-best --columns cpu:soft >> $R/protocols.log 2>&1
$P --out benchmarks/runs/t/teacher-ensemble --teacher pools/cifar10-convnet-2x1ep-11d062a7ac --rows random,ours-best --columns cpu:soft >> $R/teachers.log 2>&1
$P --out benchmarks/runs/t/teacher-T4 --temperature 4 --rows random,ours-best --columns cpu:soft >> $R/teachers.log 2>&1
