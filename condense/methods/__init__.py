"""Distillation methods by name: `@register_method("name")` on a `Method` subclass (the timm pattern).

The built-in methods (`ncfm`, `dance`, `dm`) register when this package is imported; a method of another
module registers when that module is imported (a test file can register one of its own). Everything around a
method (the loop, the run folder, the job, torchrun sharding, condense-as-you-go, the set file) knows only `Method`.
"""

from __future__ import annotations

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


def method_class(name: str) -> type[Method]:
    """The method registered as `name`, or one clear error naming the registered ones."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


from . import dance, dm, ncfm  # noqa: E402  the built-in methods register themselves

__all__ = ["METHODS", "Method", "NoSettings", "dance", "dm", "method_class", "ncfm", "register_method"]
