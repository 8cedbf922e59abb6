# issue 25: the fingerprints of commit 82c5928 (before the method interface), from a git worktree of that commit beside the
# checkout (so ../shared/data resolves), with this checkout's virtual environment and PYTHONPATH at the worktree.
cd ../old82 && PYTHONPATH=. python benchmarks/fingerprints.py --save ../main/benchmarks/results/cpu-2026-12-07b/fingerprints-82c5928.json
# then, at the method interface (2c538ff's tree), the check against it: every result "same" (fingerprints-check.log when re-run
# at the final commit, with --save of the new record).
# The check at 84c6183 (the code of issues 25 and 26 as submitted), saving the new record with dance, dm and k-center:
python benchmarks/fingerprints.py --check benchmarks/results/cpu-2026-12-07b/fingerprints-82c5928.json --save benchmarks/results/cpu-2026-12-07b/fingerprints-84c6183.json
# -> fingerprints-check-84c6183.log: every result of 82c5928 "same", exit 0; dance, dm, kcenter "new".
