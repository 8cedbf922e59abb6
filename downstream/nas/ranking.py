"""How well a proxy ranks the candidates: Spearman over all and over the top k, its pick against the best, its cost.

REFERENCE.md section 4: the rank correlation of the proxy's accuracies with the reference accuracies.
"""

from __future__ import annotations

import math
import warnings

TOP_K = (5, 10, 20)


def spearman(x, y) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when undefined (fewer than 2 points, a constant side)."""
    from scipy.stats import spearmanr  # scipy.stats takes about a second to import; only a ranking needs it

    if len(x) != len(y):
        raise ValueError(f"{len(x)} and {len(y)} values")
    if len(x) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input and returns nan
        rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else None


def rank_report(proxy: list[float], reference: list[float], names: list[str], top_k=TOP_K) -> dict:
    """Spearman over all and over the top k by reference accuracy; the reference accuracy of the proxy's pick vs the best."""
    by_reference = sorted(range(len(reference)), key=lambda i: -reference[i])
    report = {"spearman": {"all": spearman(proxy, reference)}}
    for k in top_k:
        top = by_reference[:k]
        report["spearman"][f"top{k}"] = spearman([proxy[i] for i in top], [reference[i] for i in top]) if len(reference) >= k else None
    pick = max(range(len(proxy)), key=lambda i: proxy[i])
    best = by_reference[0]
    report.update(pick=names[pick], pick_reference_accuracy=reference[pick], best=names[best],
                  best_reference_accuracy=reference[best], pick_rank=1 + by_reference.index(pick))
    return report


def summarise(candidates: list[dict], proxies) -> dict:
    """Per proxy: rank report over the candidates finished so far, its search time and the reference's."""
    done = [c for c in candidates if "reference" in c["runs"] and all(p in c["runs"] for p in proxies)]
    summary = {"finished": len(done), "reference_search_seconds": sum(c["runs"]["reference"]["seconds"] for c in done),
               "reference_images_seen": sum(c["runs"]["reference"]["images_seen"] for c in done), "proxies": {}}
    if not done:
        return summary
    names = [c["name"] for c in done]
    reference = [c["runs"]["reference"]["accuracy"] for c in done]
    for proxy in proxies:
        seconds = sum(c["runs"][proxy]["seconds"] for c in done)
        images = sum(c["runs"][proxy]["images_seen"] for c in done)
        summary["proxies"][proxy] = {
            **rank_report([c["runs"][proxy]["accuracy"] for c in done], reference, names),
            "search_seconds": seconds,
            "images_seen": images,
            "reference_time_ratio": summary["reference_search_seconds"] / seconds if seconds else None,
            "reference_images_ratio": summary["reference_images_seen"] / images,
        }
    return summary
