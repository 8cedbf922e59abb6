"""Continual learning with condensed sets, through Avalanche 0.6 (REFERENCE.md §3).

The package root holds what needs neither Avalanche nor matplotlib, so `import downstream.continual`
stays light; the other modules import them at the top and are imported by name:

- `config`: `CLConfig`, the presets (`CL_PRESETS`, `cl_preset`), the memories by name (`MemorySpec`, `parse_memories`);
- `herding`: a model's features of a dataset and the greedy herding order (iCaRL);
- `benchmark`: the class-incremental benchmark (`condensed_benchmark`) and its items (`stream_dataset`, `raw_tensors`);
- `memories`: the replay memories (`RandomMemory`, `HerdingMemory`, `CondensedMemory`, `CondensingMemory`);
- `plugins`: `FreshModelPlugin`, the DM protocol (a fresh model trained on the memory after every experience);
- `protocol`: `make_memory`, `run_continual` (one run, by `CLConfig.strategy`: fresh or replay), `run_comparison` (every memory under every seed), `summarise`;
- `report`: `format_table`, `save_plot`.
"""

from .config import CL_PRESETS, CLConfig, MemorySpec, cl_preset, parse_memories
from .herding import herding_order, layer_features

__all__ = ["CL_PRESETS", "CLConfig", "MemorySpec", "cl_preset", "herding_order", "layer_features", "parse_memories"]
