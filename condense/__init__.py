"""Dataset condensation (NCFM, DANCE, DM and registered methods): real data, networks, augmentation, condensed sets, evaluation.

The job and its parts by name, each imported on first use (`import condense` stays light):

    import condense
    config = condense.preset("cifar10-ipc10-cpu", "dance").changed(data="../shared/data/cifar10", iterations=50)
    result = condense.distill(config, "runs/dance", device)         # the whole job; result["set"] is a SyntheticSet
    condense.evaluate_set(result["set"], test, condense.eval_preset("dc"), device)
"""

from importlib.metadata import PackageNotFoundError, version

from .lazy import lazy_names

try:
    __version__ = version("condense-toolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

API = {
    **dict.fromkeys(("distill", "prepare"), "condense.run"),
    **dict.fromkeys(("DistillConfig", "preset", "PRESETS"), "condense.config"),
    **dict.fromkeys(("Method", "register_method", "method_class", "METHODS"), "condense.methods"),
    "make_method": "condense.distill",
    "DataSource": "condense.source",
    "RealData": "condense.data",
    "SyntheticSet": "condense.synthetic",
    **dict.fromkeys(("evaluate_set", "eval_preset", "EvalConfig", "PROTOCOLS"), "condense.evaluate"),
    **dict.fromkeys(("export", "push", "load_set_source"), "condense.hub"),
    **dict.fromkeys(("random_subset", "coreset"), "condense.baseline"),
    "import_set": "condense.importers",
    **dict.fromkeys(("build_net", "seeded_net"), "condense.nets"),
    **dict.fromkeys(("iterate", "run_distillation", "Callback"), "condense.loop"),
}
__getattr__, __dir__ = lazy_names(__name__, API)
__all__ = ["__version__", *API]
