OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/batched_cpu.py --data ../shared/data/cifar10 --steps 50 --eval-epochs 20 --repeats 3 --out benchmarks/results/cpu-2026-12-01/y-batched-cpu.json
