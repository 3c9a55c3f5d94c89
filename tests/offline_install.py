"""Install an example plugin package offline into a ``--target`` folder, for the tests that use
one as a third party would (``test_third_party_solver.py``, ``test_third_party_task.py``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def pip_install(source: Path, target: Path) -> None:
    """``pip install --target target source``: offline first (``--no-index --no-build-isolation``,
    the environment's own setuptools builds it), else an isolated build that fails fast without a
    network. A failure fails the test with pip's output."""
    command = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
        "--no-input", "--target", str(target), str(source),
    ]
    offline = command[:4] + ["--no-index", "--no-build-isolation"] + command[4:]
    isolated = command[:4] + ["--retries", "1", "--timeout", "15"] + command[4:]  # fail fast without a network
    failures = []
    for attempt in (offline, isolated):
        shutil.rmtree(target, ignore_errors=True)
        done = subprocess.run(attempt, capture_output=True, text=True, timeout=300, cwd=source.parent)
        if done.returncode == 0:
            return
        failures.append(f"$ {' '.join(attempt)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    pytest.fail(f"pip could not install {source.name}:\n\n" + "\n\n".join(failures))
