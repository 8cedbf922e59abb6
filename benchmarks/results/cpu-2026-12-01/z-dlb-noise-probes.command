# probes for the memorising regime (CE only, 40 % noise, seed 0; 2,000 CIFAR-10 images, no augmentation), in the order run:
# 1. batch 128, 40 epochs (curve on 200 test images per class; stopped during its second rate, 0.2):
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/dlb_noise.py --per-class 200 --epochs 40 --noise 0.4,0.2 --seeds 1 --methods ce --out benchmarks/runs/z/probe/figures.json --plot benchmarks/runs/z/probe/curves.png
# 2. batch 128, 16 epochs (stopped after CE: its curve did not fall):
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/dlb_noise.py --data ../shared/data/cifar10 --per-class 200 --curve-per-class 100 --epochs 16 --seeds 2 --out benchmarks/runs/z/noise/figures.json --plot benchmarks/runs/z/noise/curves.png --noise 0.4,0 --methods ce,dlb-official,dlb-paper
# 3. batch 32, 16 epochs (stopped after CE: its curve fell 1 point only):
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/dlb_noise.py --data ../shared/data/cifar10 --per-class 200 --curve-per-class 100 --epochs 16 --batch-size 32 --seeds 2 --out benchmarks/runs/z/noise/figures.json --plot benchmarks/runs/z/noise/curves.png --noise 0.4,0 --methods ce,dlb-official,dlb-paper
