"""What gets published: the sdist and the wheel built from it, checked file by file.

The tree is copied (without VCS data, virtual environments and caches) and built with
``python -m build --no-isolation``: the sdist first, then the wheel from that sdist, so a
wheel that builds proves the sdist holds everything needed. No network is used: setuptools,
wheel and build come from the ``dev``/``test`` extras.
"""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import starlette_session

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NAME = "starlette_session"
VERSION = starlette_session.__version__
#: What the sdist may hold at its top level: the package, its metadata and the files describing it.
SDIST_TOP = {
    "CHANGELOG.md",
    "LICENSE",
    "MANIFEST.in",
    "PKG-INFO",
    "README.md",
    "SECURITY.md",
    "pyproject.toml",
    "setup.cfg",
    NAME,
    f"{NAME}.egg-info",
}
COPY_IGNORED = shutil.ignore_patterns(
    ".git", ".venv*", ".cache", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "build", "dist"
)


@dataclass(frozen=True)
class Built:
    source: Path
    sdist: list[str]
    wheel: list[str]
    metadata: Message
    wheel_license: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=COPY_IGNORED)
    # Scratch files of the kinds a work tree gathers: none may reach a distribution.
    (source / NAME / "__pycache__").mkdir(exist_ok=True)
    (source / NAME / "__pycache__" / "scratch.cpython-311.pyc").write_bytes(b"")
    (source / NAME / "notes.orig").write_text("scratch\n")
    (source / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (source / "benchmarks" / "results" / "run.json").write_text("{}\n")
    out = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    assert sdist.name == f"{NAME}-{VERSION}.tar.gz"
    assert wheel.name == f"{NAME}-{VERSION}-py3-none-any.whl"
    with tarfile.open(sdist) as tar:
        sdist_names = [member.name for member in tar.getmembers() if member.isfile()]
    with zipfile.ZipFile(wheel) as zipped:
        wheel_names = zipped.namelist()
        metadata = email.message_from_bytes(zipped.read(f"{NAME}-{VERSION}.dist-info/METADATA"))
        [license_name] = [name for name in wheel_names if name.endswith(".dist-info/licenses/LICENSE")]
        wheel_license = zipped.read(license_name).decode()
    return Built(source, sdist_names, wheel_names, metadata, wheel_license)


def test_sdist_holds_the_package_and_its_description_only(built: Built) -> None:
    prefix = f"{NAME}-{VERSION}/"
    assert all(name.startswith(prefix) for name in built.sdist), built.sdist
    names = {name[len(prefix) :] for name in built.sdist}
    tops = {name.split("/", 1)[0] for name in names}
    assert tops <= SDIST_TOP, f"unexpected in the sdist: {sorted(tops - SDIST_TOP)}"
    for required in ("LICENSE", "README.md", "setup.cfg", "pyproject.toml", f"{NAME}/py.typed"):
        assert required in names, f"{required} is missing from the sdist"
    # Tests and benchmarks are left out on purpose (MANIFEST.in says why).
    assert not tops & {"tests", "benchmarks", "examples", "scripts", "docs", ".ci"}
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".orig"))]


def test_wheel_holds_every_module_and_nothing_else(built: Built) -> None:
    dist_info = f"{NAME}-{VERSION}.dist-info/"
    package = {name for name in built.wheel if not name.startswith(dist_info)}
    assert all(name.startswith(f"{NAME}/") for name in package), sorted(package)
    assert f"{NAME}/py.typed" in package
    stray = [name for name in package if not name.endswith(".py") and name != f"{NAME}/py.typed"]
    assert not stray, f"non-module files in the wheel: {stray}"
    # Every module of the source package is there (no subpackage forgotten by find:).
    source_modules = {
        path.relative_to(built.source).as_posix()
        for path in (built.source / NAME).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert source_modules == package - {f"{NAME}/py.typed"}
    assert not [name for name in built.wheel if name.startswith(("tests/", "benchmarks/", "examples/"))]


def test_wheel_metadata_license_and_urls(built: Built) -> None:
    assert built.wheel_license == (ROOT / "LICENSE").read_text()
    assert built.wheel_license.startswith("MIT License\n\nCopyright (c) starlette_session contributors\n")
    metadata = built.metadata
    assert metadata["Name"] == "starlette-session"
    assert metadata["Version"] == VERSION
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Changelog"}
    assert all(url.startswith("https://") for url in urls.values())
    # The long description is the README, whose links must work on PyPI too: no relative ones.
    readme = metadata.get_payload()
    assert isinstance(readme, str)
    assert readme.strip() == (ROOT / "README.md").read_text().strip()
    links = re.findall(r"\]\(([^)\s]*)", readme)
    assert links, "no links found: the pattern is out of date"
    relative = [link for link in links if not link.startswith(("https://", "http://", "mailto:", "#"))]
    assert not relative, f"README links that break on PyPI: {relative}"
