"""Distillation methods by name: `@register_method("name")` on a `Method` subclass (the timm pattern).

The built-in methods (`ncfm`, `dance`, `dm`) register when this package is imported; a method of another
module registers when that module is imported (a test file can register one of its own), and another package's
method is found by name through the entry-point group `condense.methods` (`pyproject.toml`:
`[project.entry-points."condense.methods"] mine = "my_package.my_module"`; loading the module registers it), so
`condense distill --method mine` works without `condense` knowing the package. Everything around a
method (the loop, the run folder, the job, torchrun sharding, condense-as-you-go, the set file) knows only `Method`.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import UserError
from .base import Method, NoSettings

METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    """Class decorator: make `cls` the method `name` (`condense distill --method name`)."""

    def register(cls: type[Method]) -> type[Method]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"a method named {name!r} is already registered ({METHODS[name].__qualname__})")
        cls.name = name
        METHODS[name] = cls
        return cls

    return register


GROUP = "condense.methods"


def method_class(name: str) -> type[Method]:
    """The method registered as `name` (an installed package's, through its entry point, loaded when first asked for),
    or one clear error naming the registered ones."""
    if name not in METHODS:
        for point in entry_points(group=GROUP, name=name):
            point.load()  # the module registers its method
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


from . import dance, dm, ncfm  # noqa: E402  the built-in methods register themselves

__all__ = ["METHODS", "Method", "NoSettings", "dance", "dm", "method_class", "ncfm", "register_method"]
