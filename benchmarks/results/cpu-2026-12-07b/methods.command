# issue 25: the methods table at cifar10-ipc10-cpu compute (hard labels; 2 distillation seeds x 2 evaluation runs; the one
# pool of seed 0, 2 members x 1 epoch, shared by every method and seed). 2-core CPU, no GPU, two single-threaded workers
# (OMP_NUM_THREADS=1, nice 10) beside other work, so no absolute time is quoted; the s/iteration ratios come from one
# process taking turns step by step (timing.json).
#
# The pools were built first (commit 82c5928's tree, identical pool code):
#   condense distill --preset cifar10-ipc10-cpu --data ../shared/data/cifar10 --iterations 0 --eval-runs 0 \
#       --pool-folder benchmarks/runs/methods/cifar10/pool --out benchmarks/runs/methods/poolbuild-cifar10   (and mnist alike)
# The ncfm and dance sets of seed 0 and the ncfm set of seed 1 were made by benchmarks/methods.py at e14a9ae-era commits
# (condense distill's job, then make_method + run_distillation: the same computation), every later set and every
# evaluation by the plan below, run from a git worktree of 5335b46 (the code fixed while the checkout moved on):
#   PYTHONPATH=<worktree> nice -n 10 bash benchmarks/methods_cpu_plan.sh     # twice, one worker per core
# Result files: methods-cifar10/ (methods.json: every cell, mean +- population std over seeds x runs, each seed's mean,
# the runs; methods.md, methods.png; evals/*.json, every evaluation whole; timing.json), plan-worker*.log.
# The ncfm row's cpu cells reproduce the previous headline exactly (54.75 and 55.405 per seed, init-streams.json of
# cpu-2026-12-07): the restructuring moved no NCFM set.
# The plan was stopped by hand at 23:50 UTC (the session's end) after its fifth command (the coresets, cpu): the dc cells
# of the rows other than ncfm and dance (random: seed 0 only) and MNIST's seed 1 were not run. methods-mnist/: the
# fourth command (mnist-ipc10-cpu, rows ncfm, dance, dm, cpu protocol, seed 0). Tables rewritten from what was done:
#   python benchmarks/methods.py --data ../shared/data/cifar10 --out benchmarks/runs/methods/cifar10 --table
#   python benchmarks/methods.py --preset mnist-ipc10-cpu --data ../shared/data/mnist --out benchmarks/runs/methods/mnist \
#       --rows ncfm,dance,dm --protocols cpu --seeds 0 --timing-steps 0 --table
