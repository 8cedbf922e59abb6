"""A finished (or partial) search for people: the plain-text table and the scatter plot (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from condense.runtime import save_figure

PLOT_FILE = "nas.png"


def plot_search(result: dict, path: str | Path) -> Path:
    """Scatter of proxy accuracy against reference accuracy, one colour per proxy (written atomically)."""
    done = [c for c in result["candidates"] if len(c["runs"]) == len(result["sets"])]
    figure = Figure(figsize=(6, 5))
    axes = figure.subplots()
    reference = [c["runs"]["reference"]["accuracy"] for c in done]
    for proxy, report in result["summary"]["proxies"].items():
        rho = report["spearman"]["all"]
        label = f"{proxy} (ρ = {rho:.2f})" if rho is not None else proxy
        axes.scatter(reference, [c["runs"][proxy]["accuracy"] for c in done], label=label, s=22, alpha=0.8)
    axes.set_xlabel(f"reference accuracy (%), {result['sets']['reference']['epochs']} epochs on "
                    f"{result['sets']['reference']['images']} real images")
    axes.set_ylabel("proxy accuracy (%)")
    axes.set_title(f"{len(done)} candidates, tested on {result['test']}", fontsize=8)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def format_summary(result: dict) -> str:
    """A plain-text table: Spearman over all and the top k, the pick against the best, search times."""
    summary = result["summary"]
    reference = result["sets"]["reference"]
    lines = [
        f"{summary['finished']} candidates; reference: {reference['epochs']} epochs on {reference['description']}; test: {result['test']}",
        f"{'proxy':<10} {'rho all':>7} {'top5':>6} {'top10':>6} {'top20':>6}  {'pick ref acc':>12} {'best':>6}  {'search min':>10} {'ref/proxy time':>14} {'images':>7}",
    ]

    def figure(value):
        return "  n/a" if value is None else f"{value:.2f}"

    for proxy, report in summary["proxies"].items():
        rho = report["spearman"]
        ratio = report["reference_time_ratio"]
        lines.append(
            f"{proxy:<10} {figure(rho['all']):>7} {figure(rho['top5']):>6} {figure(rho['top10']):>6} {figure(rho['top20']):>6}  "
            f"{report['pick_reference_accuracy']:>11.2f}% {report['best_reference_accuracy']:>5.2f}%  "
            f"{report['search_seconds'] / 60:>10.1f} {figure(ratio):>13}x {report['reference_images_ratio']:>6.1f}x"
        )
    lines.append(f"{'reference':<10} {'':>7} {'':>6} {'':>6} {'':>6}  {'':>12} {'':>6}  {summary['reference_search_seconds'] / 60:>10.1f}")
    for proxy, report in summary["proxies"].items():
        lines.append(f"{proxy} picks {report['pick']} (reference rank {report['pick_rank']}); best: {report['best']}")
    return "\n".join(lines)
