#!/bin/bash
# slot B after slot-b6.sh (22:55): the fresh model with CE for twice the epochs (200), DLB's equal-time baseline
# (issue 17 item 1), condensed memory, 2 seeds
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
while kill -0 8168 2>/dev/null; do sleep 10; done
downstream cl --data ../shared/data/cifar10 --no-progress --device cpu --memory condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0,1 \
  --epochs 200 --objective ce --out benchmarks/runs/t/cl-ce-2x > $R/cl-ce-2x.log 2>&1
