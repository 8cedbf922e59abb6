#!/usr/bin/env bash
# The methods table of issue 25 on a 2-core CPU, in the order its cells matter (a session's CPU time does not hold the
# whole table): start this script twice (one worker per core); each worker goes through the commands in order, taking
# the tasks the other has not, so no core idles between commands. Re-running it continues a partial table.
# Then: python benchmarks/methods.py --table (CIFAR-10, every row and protocol) and the MNIST --table line below.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cifar=(python benchmarks/methods.py --data ../shared/data/cifar10 --out benchmarks/runs/methods/cifar10 --no-wait)
mnist=(python benchmarks/methods.py --preset mnist-ipc10-cpu --data ../shared/data/mnist --out benchmarks/runs/methods/mnist
       --rows ncfm,dance,dm --protocols cpu --timing-steps 0 --no-wait)
"${cifar[@]}" --rows ncfm,dance --protocols cpu,ncfm,dc          # the question: the characteristic function against mean matching
"${cifar[@]}" --rows ncfm,dance,dm,random --protocols cpu        # dm, the random floor, then the seconds per iteration
"${cifar[@]}" --rows ncfm-no-calibration,dance-no-calibration --protocols cpu
"${mnist[@]}" --seeds 0
"${cifar[@]}" --rows herding,kcenter --protocols cpu
"${cifar[@]}" --rows dm,random,ncfm-no-calibration,dance-no-calibration,herding,kcenter --protocols dc
"${mnist[@]}" --seeds 0,1
