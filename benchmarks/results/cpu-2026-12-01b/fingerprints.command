# issue 16: the record of what the commands computed before the restructuring (commit 41588b7, in a worktree at ../fp41
# with this script copied in), run twice with the same results (determinism checked), then digested from the kept folders:
cd ../fp41 && PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/fingerprints.py --save fp41-a.json --keep fp41-run-a
cd ../fp41 && PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/fingerprints.py --check fp41-a.json --keep fp41-run-b
# (the two runs differed only in the space file's path inside nas.json; digest_json now takes the work folder out)
# fingerprints-41588b7.json = the digests of fp41-run-a (identical to those of run b)
# after the change:
OMP_NUM_THREADS=1 python benchmarks/fingerprints.py --check benchmarks/results/cpu-2026-12-01b/fingerprints-41588b7.json
