"""Names a package offers at its top level, each imported from its module on first use (PEP 562), so that
`import condense` or `import downstream` loads neither torch's stack nor Avalanche nor matplotlib until asked."""

from __future__ import annotations

import importlib


def lazy_names(package: str, table: dict[str, str]):
    """`__getattr__` and `__dir__` for `package`: `table` maps a name to the module that defines it."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
