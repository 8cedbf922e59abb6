"""Issue 28 item 4: the top-level API by name, and imports that stay light."""

import subprocess
import sys

import condense
import downstream


def test_the_packages_offer_the_job_and_its_parts_by_name():
    for package in (condense, downstream):
        for name in package.API:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
            assert name in dir(package) and name in package.__all__
    assert condense.preset("cifar10-ipc10-cpu", "dance").method == "dance" and "dm" in condense.METHODS
    from downstream.load import load_condensed

    assert downstream.load_condensed is load_condensed


def test_importing_the_packages_loads_no_heavy_dependency():
    code = ("import sys, condense, downstream; heavy = [m for m in ('torch', 'avalanche', 'matplotlib', 'datasets') if m in sys.modules]; "
            "print(heavy); assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        condense.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'no_such_name'" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
