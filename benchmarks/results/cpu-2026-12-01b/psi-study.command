# issue 15 item 6 (the min-max variants) and item 4/8 candidates; two single-threaded processes side by side, same pool
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac --skip-baselines --seeds 0,1 --variants gaussian-lr1e-2,psi-lr1e-2,psi-tight-lr1e-2,psi-penalty-lr1e-2 --out benchmarks/runs/s/psi-a
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac --skip-baselines --seeds 0,1 --variants psi-normalised-lr1e-2,psi-decoupled-lr1e-2,gaussian-decoupled-lr1e-2,gaussian-lr1e-2-first-nearest --out benchmarks/runs/s/psi-b
# 19:05: psi-b stopped after psi-normalised seed 0 (53.28 ± 0.06; its figures.json saved as psi-b.json): at the loaded
# machine's speed (~35 min per variant-seed) two seeds of every variant do not fit the session; the rest at seed 0:
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac --skip-baselines --seeds 0 --variants psi-decoupled-lr1e-2,gaussian-decoupled-lr1e-2,psi-penalty-lr1e-2 --out benchmarks/runs/s/psi-b2
# 19:52: psi-a stopped after psi-lr1e-2 seed 0 (the rows of psi-a are in psi-a.json): gaussian-lr1e-2 seeds 0 and 1,
# psi-lr1e-2 seed 0. 19:57: psi-b2 stopped after gaussian-decoupled (psi-penalty not run; rows in psi-b2.json).
# Then, in the two slots (benchmarks/runs/s/slot-a.sh, slot-b.sh, copied below):
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/protocols.py --data ../shared/data/cifar10 --out benchmarks/runs/s/dlb-sets --device cpu --best benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors --rows ours-best,random --columns cpu:hard,cpu:hard:dlb-official,cpu:hard:dlb-paper,cpu:hard:ce-nocutmix
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/accuracy_vs_iterations.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac --out benchmarks/runs/s/iterations --device cpu
# 20:23: accuracy_vs_iterations stopped after its 400-iteration distillation (snapshots kept); figures.json prefilled with
# the sets already measured that are bit-identical (torch.equal) to its snapshots: 0 iterations = the init study's
# random:area set, 200 = the gaussian-lr1e-2 seed-0 set; the published line from ../shared/reference_sets/README.md;
# then the same command again evaluates 25, 50, 100, 400:
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/accuracy_vs_iterations.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac --out benchmarks/runs/s/iterations --device cpu
# 20:56: protocols.py (dlb-sets) stopped after the ours-best row (the random row not run); 21:07 accuracy_vs_iterations finished.
