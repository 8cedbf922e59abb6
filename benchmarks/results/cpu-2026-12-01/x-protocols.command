OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/protocols.py --data ../shared/data/cifar10 --out benchmarks/runs/x/protocols --device cpu --best benchmarks/runs/lead/lr1e-2-seed0 --rows published-200it,ours-best --columns ncfm:hard,dc:hard
killed at 17:44 during published-200it dc:hard (to finish the ncfm pair before 18:15); then:
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/protocols.py --data ../shared/data/cifar10 --out benchmarks/runs/x/protocols --device cpu --best benchmarks/runs/lead/lr1e-2-seed0 --rows ours-best --columns ncfm:hard
