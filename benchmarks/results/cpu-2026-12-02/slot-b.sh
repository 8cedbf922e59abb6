#!/bin/bash
# slot B (issue 15 items 6, 5, 4): two single-threaded processes side by side all session (slot-a.sh beside)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-02
POOL=pools/cifar10-convnet-2x1ep-11d062a7ac
echo "$(date +%H:%M) psi with a penalty on sigma, seed 0"
python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --pool-folder $POOL --skip-baselines --seeds 0 --variants psi-penalty-lr1e-2 --out benchmarks/runs/u/psi-penalty > $R/psi-penalty.log 2>&1
for lr in 1e-2 1e-3; do
  echo "$(date +%H:%M) MNIST lr $lr"
  condense distill --preset mnist-ipc10-cpu --data ../shared/data/mnist --lr $lr --eval-runs 2 --no-progress --device cpu --out benchmarks/runs/u/mnist-lr$lr > $R/mnist-lr$lr.log 2>&1
done
echo "$(date +%H:%M) pool pretrained with colour + crop + cutout at once"
python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --override pool_dsa=color_crop_cutout pool_dsa_mode=all --pool-folder pools/cifar10-convnet-2x1ep-dsa-all --skip-baselines --seeds 0 --variants gaussian-lr1e-2 --out benchmarks/runs/u/pool-dsa-all > $R/pool-dsa-all.log 2>&1
echo "$(date +%H:%M) matching with colour + crop + cutout at once"
python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --pool-folder $POOL --skip-baselines --seeds 0 --variants gaussian-lr1e-2-dsa-all --out benchmarks/runs/u/dsa-all > $R/dsa-all.log 2>&1
echo "$(date +%H:%M) done"
