#!/bin/bash
# after slot-b2.sh (it ends first): the random row's soft cells under ncfm and dc (the baseline of those soft columns)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-02
while pgrep -f slot-b2.sh > /dev/null; do sleep 10; done
echo "$(date +%H:%M) random real, soft labels under ncfm and dc"
python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu --out benchmarks/runs/t/protocols --best benchmarks/runs/lead/lr1e-2-seed0 \
  --rows random --columns ncfm:soft,dc:soft >> $R/protocols.log 2>&1
echo "$(date +%H:%M) done"
