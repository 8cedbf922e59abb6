"""Put the init study's random:area cpu figure into the protocol table as ours-init cpu:hard (the same set, torch.equal checked)."""
import json
from pathlib import Path

path = Path("benchmarks/runs/t/protocols/figures.json")
figures = json.loads(path.read_text())
study = json.loads(Path("benchmarks/results/cpu-2026-12-01/x-init-study.json").read_text())
row = next(r for r in study["rows"] if r["set"] == "random:area")
figures["cells"].setdefault("ours-init", {})["cpu:hard"] = {
    "accuracy_mean": row["accuracy_mean"], "accuracy_std": row["accuracy_std"], "runs": row["runs"], "labels": "hard",
    "protocol": study["evaluation"], "from": "benchmarks/results/cpu-2026-12-01/x-init-study.json (random:area, torch.equal to ours-init)"}
path.write_text(json.dumps(figures, indent=1))
