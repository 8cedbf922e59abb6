"""Training objectives by name, for the command lines: `ce` (plain cross-entropy) and every registered one.

Packages register objectives under the entry-point group `condense.objectives` (downstream's `dlb` is one:
`pyproject.toml`), so `condense eval --objective dlb` works without `condense` importing `downstream`.
An objective is a class that `condense.train.train(objective=...)` accepts (`condense.train.Objective`).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from .errors import UserError

GROUP = "condense.objectives"


def registered() -> dict:
    """The registered objectives' entry points, by name."""
    return {point.name: point for point in entry_points(group=GROUP)}


def objective_names() -> list[str]:
    return ["ce", *sorted(registered())]


def make_objective(name: str, **settings):
    """None for `ce`, else the registered objective `name` built with `settings` (its flags; it takes what it knows)."""
    if name == "ce":
        return None
    points = registered()
    if name not in points:
        raise UserError(f"unknown objective {name!r}; choose one of {', '.join(objective_names())} "
                        "(registered objectives come with their package: pip install the project again if dlb is missing)")
    return points[name].load().from_settings(**settings)
