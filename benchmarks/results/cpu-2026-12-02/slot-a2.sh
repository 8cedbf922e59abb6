#!/bin/bash
# slot A from 01:22 (slot-a.sh stopped after its first command, pid 18817, KD + DLB on the best set, which runs on):
# replay with the condensed memory at a second seed, the teacher trained 5 epochs, psi + sigma penalty at seed 1
cd "$(git rev-parse --show-toplevel)" && . .venv/bin/activate
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=benchmarks/results/cpu-2026-12-02
while kill -0 18817 2>/dev/null; do sleep 10; done
P="python benchmarks/protocols.py --data ../shared/data/cifar10 --device cpu"
BEST0="benchmarks/runs/s/psi-a/gaussian-lr1e-2-seed0/synthetic.safetensors"
CL="downstream cl --data ../shared/data/cifar10 --memory condensed:benchmarks/runs/lead/lr1e-2-seed0 --seeds 1 --no-progress --device cpu --strategy replay --stream-epochs 2"
echo "$(date +%H:%M) replay CE, seed 1"
$CL --objective ce --out benchmarks/runs/t/replay-ce-seed1 > $R/replay-ce-seed1.log 2>&1
echo "$(date +%H:%M) replay DLB, seed 1"
$CL --objective dlb --out benchmarks/runs/t/replay-dlb-seed1 > $R/replay-dlb-seed1.log 2>&1
echo "$(date +%H:%M) teacher trained 5 epochs"
condense pretrain --data ../shared/data/cifar10 --pool-size 1 --pool-epochs 5 --pool-folder pools/cifar10-convnet-1x5ep --no-progress --device cpu > $R/teacher-5ep.log 2>&1
$P --out benchmarks/runs/t/teacher-5ep --best $BEST0 --teacher pools/cifar10-convnet-1x5ep/member-000-trained.safetensors --rows random,ours-best --columns cpu:soft >> $R/teacher-5ep.log 2>&1
echo "$(date +%H:%M) psi with a penalty on sigma, seed 1"
python benchmarks/ncfm_cpu.py --data ../shared/data/cifar10 --pool-folder pools/cifar10-convnet-2x1ep-11d062a7ac --skip-baselines --seeds 1 --variants psi-penalty-lr1e-2 --out benchmarks/runs/u/psi-penalty-seed1 > $R/psi-penalty-seed1.log 2>&1
echo "$(date +%H:%M) done"
