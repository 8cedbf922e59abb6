#!/bin/bash
# slot B from 01:22 (slot-b.sh stopped during MNIST lr 1e-2, pid 19728, which runs on): MNIST lr 1e-3, the pool
# pretrained with colour + crop + cutout at once, then the initial set downsized by nearest neighbour, 200 iterations
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-02
while kill -0 19728 2>/dev/null; do sleep 10; done
echo "$(date +%H:%M) MNIST lr 1e-3"
condense distill --preset mnist-ipc10-cpu --data ../shared/data/mnist --lr 1e-3 --eval-runs 2 --no-progress --device cpu --out benchmarks/runs/u/mnist-lr1e-3 > $R/mnist-lr1e-3.log 2>&1
echo "$(date +%H:%M) pool pretrained with colour + crop + cutout at once"
python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --override pool_dsa=color_crop_cutout pool_dsa_mode=all --pool-folder pools/cifar10-convnet-2x1ep-dsa-all --skip-baselines --seeds 0 --variants gaussian-lr1e-2 --out benchmarks/runs/u/pool-dsa-all > $R/pool-dsa-all.log 2>&1
echo "$(date +%H:%M) initial set by nearest neighbour, 200 iterations"
python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --override init_resize=nearest --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac --skip-baselines --seeds 0 --variants gaussian-lr1e-2 --out benchmarks/runs/u/init-nearest > $R/init-nearest.log 2>&1
echo "$(date +%H:%M) done"
