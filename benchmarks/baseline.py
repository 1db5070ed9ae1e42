"""The package as it was when the performance issue was filed, to measure against in the same run.

The issue's targets compare ratios taken on one machine in one run; the numbers in its text
were measured on another day, when the machine was in another state. To show how far a gap
moved, the floors phase (``benchmarks/floors.py``) also times the package at
``BASELINE_COMMIT``, the last commit before work on the issue began, beside today's code,
taking turns with it.

``prepare()`` extracts ``starlette_session/`` at that commit from this repository's history
(``git archive``) into ``benchmarks/.vendor-baseline/`` and renames its imports to
``starlette_session_baseline``, so both versions import side by side in one process with no
``sys.modules`` juggling (the old code's lazy imports then find its own modules, not ours).
Its record keys keep the old prefix and raw ids, so its records and ours never meet in a store.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

#: The last commit before the performance issue's work began (2026-11-22).
BASELINE_COMMIT = "7ef139f"
PACKAGE = "starlette_session_baseline"
REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / "benchmarks" / ".vendor-baseline"

_DOTTED = re.compile(r"\bstarlette_session(?=\.[A-Za-z_])")
_IMPORT = re.compile(r"^(\s*)(from|import) starlette_session\b(?!_)", re.MULTILINE)


def _rename(text: str) -> str:
    return _IMPORT.sub(rf"\1\2 {PACKAGE}", _DOTTED.sub(PACKAGE, text))


def prepare(vendor: Path = VENDOR, commit: str = BASELINE_COMMIT) -> str | None:
    """Extract the package at ``commit`` into ``vendor`` (once); return why not, or ``None``.

    Needs ``git`` and a clone whose history holds ``commit`` (a shallow clone does not).
    """
    target = vendor / PACKAGE
    stamp = vendor / "COMMIT"
    if (target / "__init__.py").is_file() and stamp.is_file() and stamp.read_text().strip() == commit:
        return None
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit, "starlette_session"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"git archive {commit} failed ({type(exc).__name__}): a clone with the full history is needed"
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "baseline.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(tmp, filter="data")
            else:  # our own repository's archive
                tar.extractall(tmp)
        source = Path(tmp) / "starlette_session"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in source.rglob("*"):
            dest = target / path.relative_to(source)
            if path.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            elif path.suffix == ".py":
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(_rename(path.read_text(encoding="utf-8")), encoding="utf-8")
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(path.read_bytes())
    stamp.write_text(commit + "\n")
    return None


def load(vendor: Path = VENDOR) -> ModuleType:
    """Import the extracted package as ``starlette_session_baseline``.

    Raises:
        FileNotFoundError: ``prepare()`` has not extracted it.
    """
    if not (vendor / PACKAGE / "__init__.py").is_file():
        raise FileNotFoundError(f"no baseline package in {vendor}; call benchmarks.baseline.prepare()")
    if str(vendor) not in sys.path:
        sys.path.append(str(vendor))
    return importlib.import_module(PACKAGE)
