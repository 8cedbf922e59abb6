"""Fingerprints of what the commands compute, to show a restructuring moved no result.

Runs, at tiny sizes on the real data in ../shared/data and single-threaded on the CPU: a seeded MNIST and two
CIFAR-10 NCFM distillations (Gaussian frequencies with soft labels, and ψ), a DANCE and a DM distillation, a
k-center coreset, a `condense eval` of one of them, a NAS table and a CL table. Each result is reduced to the sha256 of its tensors or of its JSON without timings.

    python benchmarks/fingerprints.py --save benchmarks/results/<machine>-<date>/fingerprints.json   # before a change
    python benchmarks/fingerprints.py --check benchmarks/results/<machine>-<date>/fingerprints.json  # after it: exit 1 if any moved
    python benchmarks/fingerprints.py --check OLD.json --save NEW.json  # both: results added since OLD are printed as new

Bit-for-bit equality holds on one machine and one torch build; another CPU may round differently.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

from condense.flags import run_main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TIMING_WORDS = ("second", "time", "elapsed", "rss", "date", "version", "path", "folder", "file", "out", "device")


def digest_tensors(path: Path, keys: tuple[str, ...]) -> str:
    from safetensors.torch import load_file

    tensors = load_file(path)
    sha = hashlib.sha256()
    for key in keys:
        if key in tensors:
            sha.update(key.encode() + tensors[key].contiguous().numpy().tobytes())
    return sha.hexdigest()


def without_timings(value):
    """The JSON value without timings and paths (which differ between runs that compute the same thing), with the
    ConvNet's `pool` option under its new name `pooling` (a rename, not a result)."""
    if isinstance(value, dict):
        return {("pooling" if k == "pool" else k): without_timings(v) for k, v in value.items()
                if not any(word in k.lower() for word in TIMING_WORDS)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value.replace("pool=", "pooling=") if isinstance(value, str) else value


def digest_json(path: Path, work: Path) -> str:
    """The sha256 of a JSON result without timings, with the work folder's name (in paths it holds) taken out."""
    value = json.loads(path.read_text().replace(str(work), "WORK"))
    return hashlib.sha256(json.dumps(without_timings(value), sort_keys=True).encode()).hexdigest()


def run(main, argv: list[str]) -> None:
    code = main([str(a) for a in argv])
    if code != 0:
        sys.exit(f"fingerprints: {' '.join(map(str, argv[:2]))} failed with exit code {code}")


def fingerprints(work: Path) -> dict[str, str]:
    from condense.cli import main as condense
    from downstream.cli import main as downstream

    mnist, cifar = SHARED / "mnist", SHARED / "cifar10"
    tiny = ["--stream-per-class", "30", "--ipc", "2", "--width", "16", "--pool-size", "1", "--pool-epochs", "1", "--real-batch", "16",
            "--iterations", "3", "--eval-runs", "0", "--seed", "0", "--device", "cpu", "--no-progress",
            "--lr", "1e-3"]  # the record's lr, so a preset's new default lr does not count as a moved result
    figures = {}
    run(condense, ["distill", "--preset", "mnist-ipc10-cpu", "--data", mnist, *tiny, "--frequencies", "64", "--out", work / "mnist",
                   "--pool-folder", work / "mnist-pool"])
    figures["distill mnist (gaussian)"] = digest_tensors(work / "mnist" / "synthetic.safetensors", ("canvases", "images", "labels"))
    run(condense, ["distill", "--data", cifar, *tiny, "--frequencies", "64", "--soft-labels", "pool", "--out", work / "cifar",
                   "--pool-folder", work / "cifar-pool"])
    figures["distill cifar10 (gaussian, soft labels)"] = digest_tensors(work / "cifar" / "synthetic.safetensors", ("canvases", "soft_labels"))
    run(condense, ["distill", "--data", cifar, *tiny, "--sampler", "learned", "--frequencies", "64", "--out", work / "cifar-psi",
                   "--pool-folder", work / "cifar-pool"])
    figures["distill cifar10 (psi)"] = digest_tensors(work / "cifar-psi" / "synthetic.safetensors", ("canvases",))
    for method in ("dance", "dm"):  # since issue 25
        run(condense, ["distill", "--method", method, "--data", cifar, *tiny, "--out", work / f"cifar-{method}", "--pool-folder", work / "cifar-pool"])
        figures[f"distill cifar10 ({method})"] = digest_tensors(work / f"cifar-{method}" / "synthetic.safetensors", ("canvases",))
    run(condense, ["baseline", "kcenter", "--data", cifar, "--ipc", "2", "--device", "cpu",
                   "--network", work / "cifar-pool" / "member-000-trained.safetensors", "--out", work / "kcenter.safetensors"])
    figures["baseline cifar10 (kcenter)"] = digest_tensors(work / "kcenter.safetensors", ("images", "labels"))
    run(condense, ["eval", work / "cifar", "--data", cifar, "--epochs", "2", "--runs", "2", "--width", "16", "--device", "cpu",
                   "--no-progress", "--out", work / "eval.json"])
    figures["condense eval (cpu protocol, 2 runs)"] = digest_json(work / "eval.json", work)
    space = [{"depth": 1, "width": 8, "pool": pool} for pool in ("none", "max", "avg")]
    (work / "space.json").write_text(json.dumps(space))
    run(downstream, ["nas", "--data", cifar, "--space", work / "space.json", "--candidates", "all", "--proxies", "condensed,random,real",
                     "--condensed", work / "cifar", "--condensed-epochs", "2", "--random-ipc", "2", "--random-epochs", "2",
                     "--real-epochs", "1", "--reference-epochs", "2", "--real-per-class", "20", "--test-per-class", "20",
                     "--device", "cpu", "--no-progress", "--out", work / "nas"])
    figures["downstream nas (3 candidates)"] = digest_json(work / "nas" / "nas.json", work)
    run(downstream, ["cl", "--data", mnist, "--steps", "2", "--memory", f"random,herding,condensed:{work / 'mnist'}", "--ipc", "2",
                     "--seeds", "0", "--epochs", "2", "--width", "8", "--stream-epochs", "1", "--device", "cpu", "--no-progress",
                     "--out", work / "cl"])
    figures["downstream cl (mnist, 2 steps)"] = digest_json(work / "cl" / "cl.json", work)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write the fingerprints to this JSON file")
    parser.add_argument("--check", type=Path, help="compare with the fingerprints in this JSON file; exit 1 if any differs")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (to compare the JSON results of two runs)")
    parser.set_defaults(func=command)
    return run_main(parser, argv)


def command(args: argparse.Namespace) -> None:
    if not (args.save or args.check):
        sys.exit("fingerprints: pass --save FILE, --check FILE, or both (check against one record, save a new one)")
    if not SHARED.is_dir():
        sys.exit(f"fingerprints: needs the real data in {SHARED}")
    torch.set_num_threads(1)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        figures = fingerprints(args.keep)
    else:
        with tempfile.TemporaryDirectory() as work:
            figures = fingerprints(Path(work))
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps({"torch": torch.__version__, "fingerprints": figures}, indent=1) + "\n")
    expected = json.loads(args.check.read_text())["fingerprints"] if args.check else figures
    moved = [name for name in expected if figures.get(name) != expected[name]]
    for name, value in figures.items():
        state = "MOVED" if name in moved else "same" if name in expected else "new"
        print(f"{name:<42} {value[:16]}  {state if args.check else ''}")
    if moved:
        sys.exit(f"fingerprints: {len(moved)} of {len(expected)} results moved: {', '.join(moved)}")


if __name__ == "__main__":
    sys.exit(main())
