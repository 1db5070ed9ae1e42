"""Run Starlette's own session tests against this package's SessionMiddleware.

usage: VENV/bin/python scripts/starlette_tests.py [PYTEST ARGS...]

Downloads the sdist of the Starlette installed in this interpreter's environment with pip
(cached in .cache/starlette-sdists/), extracts its ``tests/middleware/test_session.py`` with the
``tests`` package files it imports (``conftest.py``, ``types.py``) into a temporary folder, points
its import of ``starlette.middleware.sessions`` at ``starlette_session`` and runs it with pytest,
under this repository's pytest configuration (``filterwarnings = error``...). Nothing of Starlette's
is written into the repository. Exits with pytest's status; any failure fails the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import starlette

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "starlette-sdists"
#: The files the session tests need, relative to the sdist's top folder.
MEMBERS = (
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/types.py",
    "tests/middleware/__init__.py",
    "tests/middleware/test_session.py",
)
IMPORT = re.compile(r"^from starlette\.middleware\.sessions import (?P<names>[\w, ]+)$", re.MULTILINE)
OURS = {"Session", "SessionMiddleware"}


def sdist(version: str) -> Path:
    """Return the path of Starlette's sdist for ``version``, downloading it on first use."""
    path = CACHE / f"starlette-{version}.tar.gz"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps"]
        subprocess.run([*pip, f"starlette=={version}", "-d", str(CACHE)], check=True)  # noqa: S603 - our argv
    if not path.exists():
        sys.exit(f"pip download did not produce {path}")
    return path


def extract(archive: Path, version: str, target: Path) -> Path:
    """Extract the session tests and their helpers into ``target``; return the test file."""
    top = f"starlette-{version}"
    with tarfile.open(archive) as tar:
        for member in MEMBERS:
            source = tar.extractfile(f"{top}/{member}")
            if source is None:
                sys.exit(f"{archive.name} has no file {member}")
            destination = target / member
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(source.read())
    return target / "tests" / "middleware" / "test_session.py"


def point_at_ours(test_file: Path) -> None:
    """Rewrite the test file's middleware import to this package; refuse anything unexpected."""
    text = test_file.read_text()
    imports = IMPORT.findall(text)
    if len(imports) != 1:
        sys.exit(f"expected one 'from starlette.middleware.sessions import ...' in {test_file.name}")
    names = {name.strip() for name in imports[0].split(",")}
    if not names <= OURS:
        sys.exit(f"{test_file.name} imports {sorted(names - OURS)} from Starlette's sessions module")
    text = IMPORT.sub(lambda match: f"from starlette_session import {match['names']}", text)
    if "starlette.middleware.sessions" in text or "starlette.middleware import sessions" in text:
        sys.exit(f"{test_file.name} still reaches Starlette's session middleware after the rewrite")
    test_file.write_text(text)


def main() -> int:
    version = starlette.__version__
    archive = sdist(version)
    with tempfile.TemporaryDirectory(prefix=f"starlette-{version}-tests-") as folder:
        test_file = extract(archive, version, Path(folder))
        point_at_ours(test_file)
        command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml")]
        command += ["--rootdir", folder, "-p", "no:cacheprovider", str(test_file), *sys.argv[1:]]
        print(f"== Starlette {version}'s tests/middleware/test_session.py against starlette_session")
        # From the extracted folder, so that ``tests`` is Starlette's package, not ours.
        return subprocess.run(command, cwd=folder, check=False).returncode  # noqa: S603 - our argv


if __name__ == "__main__":
    sys.exit(main())
