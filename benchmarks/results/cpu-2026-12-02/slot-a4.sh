#!/bin/bash
# after slot-a2.sh: this project's best set with soft labels under ncfm (beside random real + the same teacher)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-02
while pgrep -f slot-a2.sh > /dev/null; do sleep 10; done
echo "$(date +%H:%M) best set, soft labels under ncfm"
python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu --out benchmarks/runs/t/protocols --best benchmarks/runs/lead/lr1e-2-seed0 \
  --rows ours-best --columns ncfm:soft >> $R/protocols-ncfm.log 2>&1
echo "$(date +%H:%M) done"
