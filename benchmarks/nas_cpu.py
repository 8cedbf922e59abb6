"""CPU-scale architecture search on CIFAR-10 (REFERENCE.md section 4): prints the `downstream nas` table.

Preset `cifar10-cpu`: 24 ConvNets sampled (seed 0) from the 720-net space among those of at most 15 MMACs per
image; proxies = an NCFM IPC-10 set without multi-formation (100 images, 80 epochs = 80 steps), a random IPC-10
subset (as many steps), real data (1 epoch); reference = the full training split (50,000 images) for 3 epochs;
tested on 200 test images per class. Without --condensed, the set is distilled first when missing (the
`cifar10-ipc10-cpu` preset with --factor 1, Gaussian frequencies, image lr 3e-3, about 15 minutes with its pool).
Resumable: run it again with the same --out to continue a killed search.

    python benchmarks/nas_cpu.py [--condensed SET] [--out FOLDER] [extra downstream-nas flags]
    torchrun --nproc_per_node 2 benchmarks/nas_cpu.py ...     # two processes share the candidates
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from condense.cli import main as condense_main
from downstream.cli import main

HERE = Path(__file__).resolve().parent
SET_RUN = HERE / "runs" / "ncfm_cpu" / "factor1"
DEFAULT_SET = SET_RUN / "synthetic.safetensors"
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "cifar10"


def distill_default_set(data: str) -> None:
    """The NCFM IPC-10 set the preset ranks with: factor 1, so its 100 images start as the seed-0 random subset."""
    code = condense_main(["distill", "--out", str(SET_RUN), "--data", data, "--factor", "1", "--sampler", "gaussian",
                          "--lr", "3e-3", "--pool-folder", str(HERE / "runs" / "ncfm_cpu" / "pool"), "--device", "cpu",
                          *(["--resume"] if (SET_RUN / "checkpoint.pt").is_file() else [])])
    if code:
        sys.exit(code)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--condensed", help=f"condensed IPC-10 CIFAR-10 set (default: {DEFAULT_SET}, distilled if missing)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default=str(HERE / "runs" / "nas_cpu"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a CPU shared with other jobs, 1 thread trained 2.3x faster than 2)")
    args, extra = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.condensed is None and not DEFAULT_SET.is_file():
        distill_default_set(args.data)
    condensed = args.condensed or str(DEFAULT_SET)
    code = main(["nas", "--preset", "cifar10-cpu", "--data", args.data, "--condensed", condensed, "--out", args.out,
                 "--device", "cpu", *extra])
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for all ranks
        print(f"benchmark wall time (this invocation): {(time.perf_counter() - start) / 60:.1f} min")
    sys.exit(code)
