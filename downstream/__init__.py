"""Consumers of condensed sets: loading, DLB training, continual learning, architecture search."""


def load_condensed(source, config=None, revision=None):
    """See `downstream.load.load_condensed` (imported on first use, so `import downstream` stays light)."""
    from .load import load_condensed as load

    return load(source, config, revision)
