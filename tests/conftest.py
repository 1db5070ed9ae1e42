"""Shared pytest configuration: real-server fixtures and the anyio backend."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.servers"]


@pytest.fixture
def anyio_backend() -> str:
    """Run ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"
