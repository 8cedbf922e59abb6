"""CPU-scale architecture search on CIFAR-10 (REFERENCE.md section 4): prints the `downstream nas` table.

Preset `cifar10-cpu`: 24 ConvNets sampled (seed 0) from the 720-net space among those of at most 15 MMACs per
image; proxies = the NCFM IPC-10 CPU set (8 epochs), a random IPC-10 subset (as many steps), real data (1 epoch);
reference = 300 real images per class for 18 epochs; tested on 200 test images per class. Resumable: run it again
with the same --out to continue a killed search.

    python benchmarks/nas_cpu.py [--condensed SET] [--out FOLDER] [extra downstream-nas flags]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from downstream.cli import main

HERE = Path(__file__).resolve().parent
DEFAULT_SET = HERE / "runs" / "ncfm_cpu" / "gaussian-lr3e-3" / "synthetic.safetensors"
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "cifar10"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--condensed", default=str(DEFAULT_SET), help="condensed IPC-10 CIFAR-10 set (default: the NCFM CPU set)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default=str(HERE / "runs" / "nas_cpu"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a CPU shared with other jobs, 1 thread trained 2.3x faster than 2)")
    args, extra = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    code = main(["nas", "--preset", "cifar10-cpu", "--data", args.data, "--condensed", args.condensed, "--out", args.out,
                 "--device", "cpu", *extra])
    print(f"benchmark wall time (this invocation): {(time.perf_counter() - start) / 60:.1f} min")
    sys.exit(code)
