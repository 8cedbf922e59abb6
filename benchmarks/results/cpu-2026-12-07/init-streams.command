# issue 24 item 1: the cifar10-ipc10-cpu headline figure (image lr 1e-2 = the preset's image_lr(10), Gaussian) after evaluation
# runs moved to their own initialisation stream; 2 distillation seeds x 2 evaluation runs, with the random-real IPC-10 and
# initial-set baselines. Run at commit fb65953, in a clean export of that commit (git archive fb65953) beside the checkout
# (so ../shared/data/cifar10 resolves), with PYTHONPATH at the export; pool trained by the command (<out>/pool, 2 x 1 epoch).
# Results: init-streams.json (= <out>/figures.json), init-streams.log. Old figure (README, cpu-2026-12-01b/psi-study.md): 55.41 ± 0.77.
PYTHONPATH=. OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --device cpu --seeds 0,1 --variants gaussian-lr1e-2 --out benchmarks/runs/h1/init-streams
# Finished 20:34 UTC (2-core machine shared with other jobs; s/iteration not comparable). cpu protocol, final epoch, mean ± population std:
#   random real IPC 10 (seed 0)          34.00 ± 0.01  (runs 33.99, 34.01)   README before the change: 33.6
#   NCFM initial set (0 iterations)      42.03 ± 0.26  (41.77, 42.30)
#   gaussian-lr1e-2 seed 0               54.75 ± 0.40  (54.35, 55.15)        before: 56.00 ± 0.21 (56.21, 55.78)
#   gaussian-lr1e-2 seed 1               55.41 ± 0.66  (54.75, 56.06)        before: 54.81 ± 0.66 (55.48, 54.15)
#   gaussian-lr1e-2, 2 seeds x 2 runs    55.08 ± 0.63                        before: 55.41 ± 0.77 (cpu-2026-12-01b/psi-study.md)
# The sets are not those of the old figure (distilled before 7df8148's grouped logits, which moved distillations in their
# last bits); init-streams-old-seeding.* evaluates these same two sets with the old seeding (51693d3) as a paired control.
