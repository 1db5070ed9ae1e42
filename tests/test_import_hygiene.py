"""Importing the package imports no optional library, and a missing one names its pip extra.

Each check runs in a fresh interpreter, so what other tests imported cannot hide an import.
"""

from __future__ import annotations

import configparser
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import starlette_session

REPO = Path(__file__).resolve().parent.parent
OPTIONAL = ("redis", "pymemcache", "aiomcache", "sqlalchemy", "cryptography")
# Modules that exist to hold the optional library's code; everything else must import without it.
IMPORTS_ON_PURPOSE = {"starlette_session.backends._sqlalchemy_table"}


def package_modules() -> list[str]:
    names = ["starlette_session"]
    for info in pkgutil.walk_packages(starlette_session.__path__, prefix="starlette_session."):
        names.append(info.name)
    return sorted(set(names) - IMPORTS_ON_PURPOSE)


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def declared_extras() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return set(parser["options.extras_require"])


# A meta path finder that makes the libraries in BLOCKED look uninstalled.
BLOCKER = """
import importlib.abc
import sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def test_modules_are_listed() -> None:
    modules = package_modules()
    for name in ("starlette_session.backends.redis", "starlette_session.backends.memcache"):
        assert name in modules
    assert "starlette_session.__main__" in modules


def test_importing_the_package_imports_no_optional_library() -> None:
    out = run_python(
        f"""
        import importlib, json, sys
        for name in {package_modules()!r}:
            importlib.import_module(name)
        roots = {{name.split(".")[0] for name in sys.modules}}
        print(json.dumps(sorted(roots & set({OPTIONAL!r}))))
        """
    )
    assert json.loads(out) == []


def test_package_imports_with_every_optional_library_blocked() -> None:
    out = run_python(
        f"""
        BLOCKED = set({OPTIONAL!r})
        {textwrap.indent(BLOCKER, " " * 8).strip()}
        import importlib
        from pathlib import Path
        for name in {package_modules()!r}:
            importlib.import_module(name)
        from starlette_session.backends import backend_for_client
        # Detection from a client's type never imports a library the client does not come from.
        backend = backend_for_client(Path("unused-dir-for-detection"))
        print(type(backend).__name__)
        """
    )
    assert out.strip() == "FileBackend"


# (blocked library, how to reach it, expected package, expected extra)
CASES = [
    ("redis", "create_backend(BackendType.redis, object())", "redis", "redis"),
    ("redis", "create_backend(BackendType.aioRedis, object())", "redis", "redis"),
    ("pymemcache", "create_backend(BackendType.memcache, object())", "pymemcache", "memcache"),
    ("aiomcache", "create_backend(BackendType.aioMemcache, object())", "aiomcache", "aiomemcache"),
    ("sqlalchemy", "create_backend(BackendType.sqlalchemy, object())", "sqlalchemy", "sqlalchemy"),
    ("sqlalchemy", "create_backend(BackendType.database, object())", "sqlalchemy", "sqlalchemy"),
    ("sqlalchemy", "SQLAlchemyBackend.from_url('sqlite:///unused.db')", "sqlalchemy", "sqlalchemy"),
    ("sqlalchemy", "getattr(sqlalchemy_backends, 'SessionRecord')", "sqlalchemy", "sqlalchemy"),
    (
        "cryptography",
        "SessionMiddleware(None, secret_key='k', encryption_key=b'0' * 32)",
        "cryptography",
        "cryptography",
    ),
]


@pytest.mark.parametrize(("blocked", "call", "package", "extra"), CASES, ids=[case[1] for case in CASES])
def test_missing_library_names_its_extra(blocked: str, call: str, package: str, extra: str) -> None:
    out = run_python(
        f"""
        import json
        BLOCKED = {{{blocked!r}}}
        {textwrap.indent(BLOCKER, " " * 8).strip()}
        from starlette_session import MissingDependencyError, SessionMiddleware
        from starlette_session.backends import BackendType, create_backend
        from starlette_session.backends import sqlalchemy as sqlalchemy_backends
        from starlette_session.backends.sqlalchemy import SQLAlchemyBackend
        try:
            {call}
        except MissingDependencyError as exc:
            print(json.dumps({{
                "package": exc.package,
                "extra": exc.extra,
                "message": str(exc),
                "is_import_error": isinstance(exc, ImportError),
                "cause": type(exc.__cause__).__name__,
            }}))
        else:
            print(json.dumps(None))
        """
    )
    result = json.loads(out)
    assert result is not None, f"{call} did not raise MissingDependencyError with {blocked} missing"
    assert result["package"] == package
    assert result["extra"] == extra
    assert f"pip install 'starlette-session[{extra}]'" in result["message"]
    assert result["is_import_error"]
    assert result["cause"] == "ModuleNotFoundError"
    assert extra in declared_extras(), f"the extra {extra!r} is not declared in setup.cfg"


@pytest.mark.parametrize(
    ("member", "extra"),
    [
        ("redis", "redis"),
        ("aioRedis", "redis"),
        ("memcache", "memcache"),
        ("aioMemcache", "aiomemcache"),
        ("sqlalchemy", "sqlalchemy"),
        ("file", ""),
        ("memory", ""),
    ],
)
def test_backend_class_declares_its_extra(member: str, extra: str) -> None:
    from starlette_session.backends import BackendType  # noqa: PLC0415

    cls = BackendType(member).backend_class()
    assert cls is not None
    assert cls.extra == extra
    if extra:
        assert extra in declared_extras()
