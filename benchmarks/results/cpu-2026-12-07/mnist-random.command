# issue 24 item 5: MNIST random real, 10 per class, re-measured with a file (commit 1c673f8, 2-core CPU, beside other jobs; OMP_NUM_THREADS=1)
condense baseline random --data ../shared/data/mnist --ipc 10 --seed 0 --out benchmarks/runs/lead/mnist-random10.safetensors
condense eval benchmarks/runs/lead/mnist-random10.safetensors --data ../shared/data/mnist --no-progress --out benchmarks/results/cpu-2026-12-07/mnist-random.eval.json
# the log's one data path was shortened to the folder's name, as condense eval prints it since this commit
