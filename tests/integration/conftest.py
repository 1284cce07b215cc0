"""Fixtures shared by integration modules (the suite-wide ones are in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from paradoxplex.shared.config import Address
from tests.support.fleet import start_upstream


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Address]:
    """An SDK upstream (``Scripted``) on a free port."""
    upstream_server, address = await start_upstream()
    try:
        yield address
    finally:
        await upstream_server.stop(0)
