# issue 25: the fingerprints of commit 82c5928 (before the method interface), from a git worktree of that commit beside the
# checkout (so ../shared/data resolves), with this checkout's virtual environment and PYTHONPATH at the worktree.
cd ../old82 && PYTHONPATH=. python benchmarks/fingerprints.py --save ../main/benchmarks/results/cpu-2026-12-07b/fingerprints-82c5928.json
# then, at the method interface (2c538ff's tree), the check against it: every result "same" (fingerprints-check.log when re-run
# at the final commit, with --save of the new record).
