"""The built wheel: what it ships (every module, the card template, the license) and what it declares it needs."""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("condense", "downstream")
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "cards", *PACKAGES)
# The lowest versions the code works with, and the call that needs each one.
FLOORS = {
    "datasets": ((4,), "datasets.List (condense.hub.row_features)"),
    "huggingface-hub": ((0, 34), "huggingface_hub.errors.HfHubHTTPError needs 0.25; the `hf auth login` the messages name, 0.34"),
    "torch": ((2, 5), "torch.autocast('mps') in condense.ncfd.exact_fp32 (older torch refuses the device type)"),
    "torchvision": ((0, 20), "the torchvision of torch 2.5"),
    "safetensors": ((0, 4), "safetensors.SafetensorError and safe_open(...).metadata()"),
    "pyarrow": ((15,), "what datasets 4 needs; imported directly in condense.hub"),
}
CEILINGS = {"avalanche-lib": ((0, 7), "the 0.6 API of the continual-learning adapters")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the checkout keeps no build/ folder)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(base)],
                           check=False, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = base.glob("*.whl")
    return found


def metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()


def requirements(wheel: Path) -> dict[str, str]:
    """Requires-Dist without extras: normalised name -> version specifiers."""
    found = {}
    for line in metadata(wheel).splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            name, specifiers = re.fullmatch(r"Requires-Dist: ([A-Za-z0-9_.-]+)\s*(.*)", line).groups()
            found[re.sub(r"[-_.]+", "-", name).lower()] = specifiers.replace(" ", "")
    return found


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_wheel_ships_every_module_the_template_and_the_license(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        license_text = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    modules = {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    assert not modules - names, f"modules missing from the wheel: {sorted(modules - names)}"
    assert "condense/cards/dataset_card.md" in names
    assert "License-Expression: MIT" in metadata(wheel).splitlines()
    assert license_text.startswith("MIT License\n\nCopyright (c) 2026 the condense-toolkit authors\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in license_text


def test_export_renders_the_card_from_the_installed_wheel_alone(wheel, tmp_path, tiny_set):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    source = tiny_set.save(tmp_path / "tiny.safetensors")
    hub = tmp_path / "hub"
    script = ("import sys, condense.card, condense.cli; print(condense.card.__file__); print(condense.card.template_path()); "
              f"sys.exit(condense.cli.main(['export', {str(source)!r}, '--out', {str(hub)!r}]))")
    run = subprocess.run([sys.executable, "-c", script], cwd=site, env={**os.environ, "PYTHONPATH": str(site)},
                         check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    module, template = run.stdout.splitlines()[:2]
    assert Path(module).is_relative_to(site) and Path(template) == site / "condense" / "cards" / "dataset_card.md"
    card = (hub / "README.md").read_text()
    assert "| `ipc6` | test | 6 | 12 | 3x8x8 | yes | not evaluated |" in card  # the template's config table
    assert "(`condense export`)." in card and "configs:" in card


def test_every_third_party_import_is_a_declared_dependency(wheel):
    declared = set(requirements(wheel))
    providers = importlib.metadata.packages_distributions()
    imported = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    imported.add(node.module.split(".")[0])
    third_party = {name for name in imported - set(PACKAGES) - set(sys.stdlib_module_names) if name != "__future__"}
    undeclared = {name: providers.get(name) for name in third_party
                  if not {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(name, [name])} & declared}
    assert not undeclared, f"imported but not declared: {undeclared}"


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_dependency_floor_covers_what_the_code_calls(wheel, name):
    needed, why = FLOORS[name]
    floors = [version(v) for v in re.findall(r">=([\d.]+)", requirements(wheel)[name])]
    assert floors and floors[0] >= needed, f"{name} needs >= {'.'.join(map(str, needed))}: {why}"


@pytest.mark.parametrize("name", sorted(CEILINGS))
def test_dependency_ceiling(wheel, name):
    limit, why = CEILINGS[name]
    ceilings = [version(v) for v in re.findall(r"<([\d.]+)", requirements(wheel)[name])]
    assert ceilings and ceilings[0] <= limit, f"{name} must stay below {'.'.join(map(str, limit))}: {why}"
