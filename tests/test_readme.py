"""The README's Python examples run as written (each in a fresh interpreter, from a folder beside ../shared).

Blocks in doctest form (`>>>`) show a session against a Hub repo and are not run here; `tests/test_hub.py`
does the same against the Hub stand-in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text) if not m.group(1).lstrip().startswith(">>>")]


def test_the_readme_has_python_examples_to_run():
    assert len(python_blocks()) >= 4


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("line, code", python_blocks(), ids=[f"README line {line}" for line, _ in python_blocks()])
def test_readme_python_example_runs_as_written(line, code, tmp_path):
    if "../shared" in code and not SHARED_DATA.is_dir():
        pytest.skip(f"needs the real data in {SHARED_DATA}")
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)  # ../shared as the README assumes
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"README line {line} failed:\n{done.stderr[-3000:]}"
