#!/bin/bash
# slot A (issue 17, then issue 15 item 7): two single-threaded processes side by side all session (slot-b.sh beside)
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-02
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu"
BEST0="benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors"
BEST1="benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed1/synthetic.safetensors"
echo "$(date +%H:%M) KD + DLB on the best set"
$P --out benchmarks/runs/t/dlb-sets --best $BEST0 --rows ours-best --columns cpu:soft:dlb-official-cutmix >> $R/dlb-sets.log 2>&1
CL="downstream cl --data ../shared/data/cifar10 --memory random,condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 0,1 --no-progress --device cpu --strategy replay --stream-epochs 2"
echo "$(date +%H:%M) replay CE"
$CL --objective ce --out benchmarks/runs/t/replay-ce-2s > $R/replay-ce.log 2>&1
echo "$(date +%H:%M) replay DLB"
$CL --objective dlb --out benchmarks/runs/t/replay-dlb-2s > $R/replay-dlb.log 2>&1
echo "$(date +%H:%M) teacher trained 5 epochs"
condense pretrain --data ../shared/data/cifar10 --pool-size 1 --pool-epochs 5 --pool-folder pools/cifar10-convnet-1x5ep --no-progress --device cpu > $R/teacher-5ep.log 2>&1
$P --out benchmarks/runs/t/teacher-5ep --best $BEST0 --teacher pools/cifar10-convnet-1x5ep/member-000-trained.safetensors --rows random,ours-best --columns cpu:soft >> $R/teacher-5ep.log 2>&1
echo "$(date +%H:%M) seed-1 set, DLB scheme (b)"
$P --out benchmarks/runs/t/dlb-sets-seed1 --best $BEST1 --rows ours-best --columns cpu:hard:dlb-paper,cpu:hard:ce-nocutmix,cpu:hard:dlb-official >> $R/dlb-sets.log 2>&1
echo "$(date +%H:%M) done"
