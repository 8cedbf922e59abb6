#!/bin/bash
# issue 17 item 2: the memorising regime; one process at a time, single-threaded
cd "$(git rev-parse --show-toplevel)"
. .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
common="--data ../shared/data/cifar10 --per-class 200 --curve-per-class 100 --epochs 30 --batch-size 32 --seeds 2 --out benchmarks/runs/z/noise/figures.json --plot benchmarks/runs/z/noise/curves.png"
python benchmarks/dlb_noise.py $common --noise 0.4,0 --methods ce,dlb-official,dlb-paper
python benchmarks/dlb_noise.py $common --noise 0.2 --methods ce,dlb-official,dlb-paper
python benchmarks/dlb_noise.py $common --noise 0.4,0 --methods ce-2x
