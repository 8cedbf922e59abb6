#!/bin/bash
# slot A (issue 15 item 2): the protocol table, hard columns first, then the soft columns
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --out benchmarks/runs/t/protocols --device cpu --best benchmarks/runs/lead/lr1e-2-seed0"
$P --rows random,herding,published-200it,ours-best,ours-init,published-init --columns cpu:hard,dc:hard,ncfm:hard >> $R/protocols.log 2>&1
$P --rows random,ours-best --columns cpu:soft >> $R/protocols.log 2>&1
$P --rows published-200it,herding,ours-init,published-init --columns cpu:soft >> $R/protocols.log 2>&1
$P --rows random,ours-best --columns dc:soft,ncfm:soft >> $R/protocols.log 2>&1
