#!/bin/bash
# slot B: after gaussian-decoupled in psi-b2 (psi-penalty dropped for time), accuracy against iterations for the new preset (issue 15 item 9)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01b
until grep -q "gaussian-decoupled-lr1e-2, 200 iterations" $R/psi-b2.log; do sleep 20; done
pkill -f "psi-b2$"; sleep 2
cp benchmarks/runs/s/psi-b2/figures.json $R/psi-b2.json
python benchmarks/accuracy_vs_iterations.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac \
  --out benchmarks/runs/s/iterations --device cpu > $R/accuracy-vs-iterations.log 2>&1
