"""A comparison's result as a table (mean ± std per step and memory) and as a plot."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from condense.runtime import save_figure


def format_table(result: dict) -> str:
    """Accuracy (%) on all seen classes after every step, mean ± std over seeds, one column per memory."""
    memories = result["memories"]
    labels = list(memories)
    widths = [max(15, len(label)) for label in labels]
    lines = ["step  classes  " + "  ".join(f"{label:>{w}}" for label, w in zip(labels, widths))]
    steps = len(next(iter(memories.values()))["accuracy_mean"])
    for k in range(steps):
        cells = [f"{m['accuracy_mean'][k]:6.2f} ± {m['accuracy_std'][k]:5.2f}" for m in memories.values()]
        lines.append(f"{k:>4}  {(k + 1) * result['classes_per_step']:>7}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    config, objective = result["config"], result["objective"]
    trained = (f"continual model (experience replay) {config['stream_epochs']} epochs per experience"
               if config.get("strategy", "fresh") == "replay" else f"fresh model {config['train']['epochs']} epochs per step")
    lines.append(f"accuracy (%) on the test images of all classes seen so far, mean ± std over seeds {list(config['seeds'])}; "
                 f"memory {config['ipc']} stored images per class; {trained}, "
                 + ("cross-entropy" if objective["objective"] == "ce" else
                    f"DLB (scheme {objective['scheme']}, tau {objective['tau']}, alpha {objective['alpha']})"))
    return "\n".join(lines)


def save_plot(result: dict, path: str | Path) -> Path:
    """Accuracy on seen classes against step, one line per memory (mean, ± std band); written atomically.

    A bare `Figure` (not pyplot's): no backend to choose and no global figure state to leak.
    """
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    per_step = result["classes_per_step"]
    for label, memory in result["memories"].items():
        x = [(k + 1) * per_step for k in range(len(memory["accuracy_mean"]))]
        mean, std = memory["accuracy_mean"], memory["accuracy_std"]
        axis.plot(x, mean, marker="o", label=label)
        axis.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    axis.set_xlabel("classes seen")
    axis.set_ylabel("test accuracy on seen classes (%)")
    config = result["config"]
    axis.set_title(f"{Path(result['data'].rstrip('/')).name}, {config['steps']} steps: memory of {config['ipc']} stored images per class")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return save_figure(figure, path)
