"""Dataset condensation (NCFM, DANCE, DM and registered methods): real data, networks, augmentation, condensed sets, evaluation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("condense-toolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
