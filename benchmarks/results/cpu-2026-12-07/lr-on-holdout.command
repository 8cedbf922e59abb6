# issue 24 item 3: the image lr of cifar10-ipc10-cpu (Gaussian frequencies) re-selected on a validation split: 500 images per
# class held out of the train split (--override holdout=500; the pool, shared by the four lrs, is pretrained on the other
# 45,000), distillation seed 0, 2 evaluation runs each (cpu protocol) tested on the 5,000 held-out images, not the test split.
# Why 500 per class: the binomial standard error of a ~55 % accuracy on 5,000 images is 0.70 points, about the run-to-run
# spread of the headline figure (0.77); 50 per class would give 2.2 points, more than the differences being ranked; 90 % of
# the train split stays for the pool and the real batches.
# Order: the current choice 1e-2 first, then 3e-2, 3e-3, 1e-3 (figures.json is rewritten after every set, so a stopped run keeps
# what it finished). Run at commit 24a449b in a clean export of it (git archive 24a449b) beside the checkout, PYTHONPATH at the export.
# Results: lr-on-holdout.json (= <out>/figures.json), lr-on-holdout.log.
PYTHONPATH=. OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --device cpu --seeds 0 --skip-baselines --variants gaussian-lr1e-2,gaussian-lr3e-2,gaussian-lr3e-3,gaussian-lr1e-3 --override holdout=500 --out benchmarks/runs/h1/lr-on-holdout
# Finished 20:58 UTC. Accuracy on the 5,000 held-out train images (validation), cpu protocol, final epoch, 2 runs, seed 0:
#   image lr 1e-3  51.10 ± 0.94 (runs in lr-on-holdout.json)
#   image lr 3e-3  53.41 ± 0.41
#   image lr 1e-2  54.13 ± 0.45   <- selected: the preset's choice does not change
#   image lr 3e-2  53.05 ± 1.09
# One distillation seed: the 0.7 and 1.1 points to 3e-3 and 3e-2 are within about two run-to-run spreads (and the held-out
# figure's own binomial error of ~0.7), so 1e-2 is the best of the four, but not resolved against its neighbours; 1e-3 is
# 3.0 points below (on the test split it was 3.9 below, README). A second seed did not fit the session.
