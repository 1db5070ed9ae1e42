"""The API reference (docs/api/*.md, rendered by mkdocstrings) covers the whole public API.

Every name in ``starlette_session.__all__``, every shipped backend class and the FastAPI
module must have a ``::: dotted.path`` directive, and every directive must name something that
exists. The strict ``mkdocs build`` in scripts/test.sh then renders them and fails on any
docstring warning.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import starlette_session

API_DOCS = Path(__file__).resolve().parent.parent / "docs" / "api"
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)
BACKEND_CLASSES = [
    "starlette_session.backends.memory.MemoryBackend",
    "starlette_session.backends.redis.RedisBackend",
    "starlette_session.backends.redis.AsyncRedisBackend",
    "starlette_session.backends.memcache.MemcacheBackend",
    "starlette_session.backends.memcache.AioMemcacheBackend",
    "starlette_session.backends.file.FileBackend",
    "starlette_session.backends.sqlalchemy.SQLAlchemyBackend",
]


def documented() -> list[str]:
    paths = []
    for page in sorted(API_DOCS.glob("*.md")):
        paths.extend(DIRECTIVE.findall(page.read_text()))
    return paths


def resolve(path: str) -> object:
    """Import ``path``: a module, or an attribute of the longest importable module prefix."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(path)


def test_directives_are_found() -> None:
    assert len(documented()) >= 10, "no ::: directives found: the pattern is out of date"


@pytest.mark.parametrize("name", starlette_session.__all__)
def test_every_exported_name_is_documented(name: str) -> None:
    assert f"starlette_session.{name}" in documented(), f"add '::: starlette_session.{name}' to docs/api/"


@pytest.mark.parametrize("path", [*BACKEND_CLASSES, "starlette_session.fastapi"])
def test_backends_and_fastapi_module_are_documented(path: str) -> None:
    assert path in documented(), f"add '::: {path}' to docs/api/"


@pytest.mark.parametrize("path", documented())
def test_every_directive_names_something_that_exists(path: str) -> None:
    resolve(path)


def test_no_name_is_documented_twice() -> None:
    paths = documented()
    assert sorted({path for path in paths if paths.count(path) > 1}) == []
