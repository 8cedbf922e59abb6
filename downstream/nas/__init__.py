"""Architecture search with condensed proxies: rank candidate networks by training them on a small set.

How well a proxy ranks is the Spearman correlation of its accuracies with the reference accuracies
(REFERENCE.md section 4); how useful it is, the reference accuracy of the candidate it picks and its time.
Modules: `space` (the candidates), `ranking` (the statistics), `search` (settings, presets, the resumable
runner) and `report` (the table and the plot); `report` needs matplotlib, so it is imported from there only.
"""

from .ranking import TOP_K, rank_report, spearman
from .search import (
    NAS_PRESETS,
    PROXY_KINDS,
    RESULT_FILE,
    NasConfig,
    TrainingSet,
    check_config,
    nas_preset,
    run_search,
    test_subset,
    train_candidate,
    training_sets,
)
from .space import CONVNET_SPACE, candidate_cost, candidate_name, convnet_space, load_space, sample_candidates

__all__ = [
    "CONVNET_SPACE", "NAS_PRESETS", "PROXY_KINDS", "RESULT_FILE", "TOP_K", "NasConfig", "TrainingSet", "candidate_cost",
    "candidate_name", "check_config", "convnet_space", "load_space", "nas_preset", "rank_report", "run_search",
    "sample_candidates", "spearman", "test_subset", "train_candidate", "training_sets",
]
