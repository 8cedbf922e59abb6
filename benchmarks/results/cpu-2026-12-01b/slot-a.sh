#!/bin/bash
# slot A: stop psi-a after psi-lr1e-2 seed 0, then DLB on the condensed sets (issue 17 item 3)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01b
until grep -q "psi-lr1e-2, 200 iterations, seed 0" $R/psi-a.log; do sleep 20; done
pkill -f "psi-a$" ; sleep 2
cp benchmarks/runs/s/psi-a/figures.json $R/psi-a.json
python benchmarks/protocols.py --data ../shared/data/cifar10 --out benchmarks/runs/s/dlb-sets --device cpu \
  --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors --rows ours-best,random \
  --columns cpu:hard,cpu:hard:dlb-official,cpu:hard:dlb-paper,cpu:hard:ce-nocutmix > $R/dlb-sets.log 2>&1
