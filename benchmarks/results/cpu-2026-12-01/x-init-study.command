OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/init_study.py --data ../shared/data/cifar10 --out benchmarks/runs/x/init --device cpu
killed after 4 of 7 rows (first:bilinear-antialias was running) to free the slot for benchmarks/protocols.py
