# issue 24 item 1 at commit fb65953 (evaluation and continual fresh-model initialisations on streams disjoint from the pool's),
# in a clean export of fb65953 (git archive) whose downstream/continual/protocol.py is c49e526's (fb65953 had swept in another
# item's unfinished line there, config.check, which the fix-up c49e526 took back; a first run stopped on it at the cl step),
# beside the checkout (so ../shared/data resolves), PYTHONPATH at the export:
PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 19 python benchmarks/fingerprints.py --check ../main/benchmarks/results/cpu-2026-12-01b/fingerprints-41588b7.json --keep KEEP
# log: fingerprints-check-fb65953.log (machine paths replaced: KEEP = the kept folder, .venv, PYTHON);
# fingerprints-fb65953.json: the same digests, computed from the kept folder with the script's digest_tensors/digest_json.
#
# Against the last check (cpu-2026-12-02/fingerprints-check.md, at 7df8148):
# | result | 7df8148 | fb65953 | why |
# | distill mnist (gaussian)                | da6ae24cc79bc022 | da6ae24cc79bc022 same  | pool members keep their seeds (seed*1000+i) |
# | distill cifar10 (gaussian, soft labels) | 5faec11c197c8d01 | 5faec11c197c8d01 same  | the same |
# | distill cifar10 (psi)                   | e9958b3c5b76b92f | e9958b3c5b76b92f same  | the same |
# | condense eval (cpu protocol, 2 runs)    | 9a99739e080c6b72 | 78ce6b21642ffcd0 MOVED | expected: evaluation runs start from the evaluation stream |
# | downstream nas (3 candidates)           | af7f9c1dc4e92a94 | 86ab3ffe7e294176 MOVED | expected: NAS candidates are built by seeded_net (evaluation stream) |
# | downstream cl (mnist, 2 steps)          | 39c9ae39144fcb8f | d65737671f4fc449 MOVED | expected: the fresh model starts from the fresh stream |
# So item 1 moves what is evaluated or trained from a seeded network, and no distillation or pool.
