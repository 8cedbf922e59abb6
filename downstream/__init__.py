"""Consumers of condensed sets: loading, DLB training, continual learning, architecture search.

The entry points by name, each imported on first use (`import downstream` loads neither Avalanche nor matplotlib):
`load_condensed`; `DLB` (the objective) and `DLBPlugin` (Avalanche); `train_model`; continual learning
(`CLConfig`, `cl_preset`, `run_comparison`); architecture search (`NasConfig`, `nas_preset`, `run_search`).
"""

from condense.lazy import lazy_names

API = {
    "load_condensed": "downstream.load",
    "DLB": "downstream.dlb",
    "DLBPlugin": "downstream.dlb_plugin",
    "train_model": "downstream.train",
    **dict.fromkeys(("CLConfig", "cl_preset", "CL_PRESETS"), "downstream.continual"),
    "run_comparison": "downstream.continual.protocol",
    **dict.fromkeys(("NasConfig", "nas_preset", "run_search"), "downstream.nas"),
}
__getattr__, __dir__ = lazy_names(__name__, API)
__all__ = list(API)
