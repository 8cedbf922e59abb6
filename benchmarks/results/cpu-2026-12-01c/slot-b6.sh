#!/bin/bash
# slot B at 22:31 (slot-b5.sh stopped during the random row's last cell, pid 7343, which runs on): the fresh model with
# DLB (official scheme, which now keeps the preset's CutMix on its new samples), 2 seeds; then experience replay with
# the condensed memory with and without DLBPlugin (seed 0)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-01c
while kill -0 7343 2>/dev/null; do sleep 10; done
CL="downstream cl --data ../shared/data/cifar10 --no-progress --device cpu"
$CL --memory random,condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0,1 --epochs 100 --objective dlb --out benchmarks/runs/t/cl-dlb > $R/cl-dlb.log 2>&1
$CL --memory condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0 --strategy replay --stream-epochs 2 --objective ce --out benchmarks/runs/t/replay-ce > $R/replay-ce.log 2>&1
$CL --memory condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0 --strategy replay --stream-epochs 2 --objective dlb --out benchmarks/runs/t/replay-dlb > $R/replay-dlb.log 2>&1
