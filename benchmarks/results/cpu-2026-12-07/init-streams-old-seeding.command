# issue 24 item 1, paired control: the two sets of init-streams (gaussian-lr1e-2 seeds 0 and 1, distilled at fb65953) evaluated
# with the seeding before the fix: commit 51693d3 (the parent of fb65953), where evaluation run r is seeded r, as pool
# member r of the seed-0 pool both sets were matched on. Clean export of 51693d3 beside the checkout, PYTHONPATH at the export;
# SET (FB65953-EXPORT/ in the files) = the export of fb65953's benchmarks/runs/h1/init-streams/gaussian-lr1e-2-seed<S>/synthetic.safetensors. Started
# when the init-streams run ended (one process after the other in that slot):
PYTHONPATH=. OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python -m condense eval SET --data ../shared/data/cifar10 --protocol cpu --runs 2 --seed 0 --device cpu --no-progress --out init-streams-old-seeding-seed<S>.json
# log: init-streams-old-seeding.log (this machine's data path written as ../shared).
# Result (cpu protocol, final epoch, mean ± population std), the same sets under the old and the new seeding:
#   seed 0 set: old seeding 55.55 ± 0.06 (55.62, 55.49)   new (init-streams) 54.75 ± 0.40 (54.35, 55.15)
#   seed 1 set: old seeding 54.78 ± 0.50 (55.28, 54.27)   new                55.41 ± 0.66 (54.75, 56.06)
#   4 runs:     old seeding 55.16 ± 0.53                  new                55.08 ± 0.63
# So starting the evaluation at the pool members' initial weights is worth -0.8 / +0.6 on these two sets and 0.1 over
# both, inside the run-to-run spread: no sign that the tie inflated the headline; the change of 55.41 -> 55.08 is of the
# size the distillation's last-bit change and two new random inits give.
