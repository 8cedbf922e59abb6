# issue 24 item 4: experience replay with the condensed memory, CE against CE + DLBPlugin, both arms trained on the
# same inputs: the stream's mini-batches un-augmented (the protocol has no stream augmentation), and DLBPlugin's repeated
# mini-batch re-forwarded as it was (DLBPlugin's default augment=None since 2d771bd; before, the repeat alone was
# cropped and flipped, and a crop of the cached view).
# Tree: commit 2d771bd, except downstream/continual/protocol.py line 156: `config.check(train_data)` (committed in
# fb65953 while CLConfig.check was not yet committed, so `downstream cl` failed at HEAD) replaced by the two checks of
# 51693d3 (--ipc >= 1, seeds given); validation only, no effect on a valid run.
# Memory: the published NCFM code's set (../shared/reference_sets/published_ncfm_cifar10_ipc10_cpu_200it.safetensors);
# the README's earlier comparison used benchmarks/runs/lead/lr1e-2-seed0, which is not in this checkout.
# CPU, one thread per process, one process at a time (nice 10), seeds 0 and 1, in this order:
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CL="python -m downstream cl --data ../shared/data/cifar10 --memory condensed:../shared/reference_sets/published_ncfm_cifar10_ipc10_cpu_200it.safetensors --no-progress --device cpu --strategy replay --stream-epochs 2"
$CL --seeds 0 --objective ce  --out OUT/replay-ce-seed0  > replay-ce-seed0.log 2>&1
$CL --seeds 0 --objective dlb --out OUT/replay-dlb-seed0 > replay-dlb-seed0.log 2>&1
$CL --seeds 1 --objective ce  --out OUT/replay-ce-seed1  > replay-ce-seed1.log 2>&1
$CL --seeds 1 --objective dlb --out OUT/replay-dlb-seed1 > replay-dlb-seed1.log 2>&1
# OUT/<name>/cl.json and cl.png are stored here as <name>.json and <name>.png (machine paths made relative).
