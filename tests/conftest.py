"""Shared test hygiene."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collector_as_found() -> Iterator[None]:
    """``run_app`` and the simulator's server freeze what is alive when they start (as a
    process should once); in the test process that would keep every later test's garbage
    out of reach of the collector, so each test hands the frozen objects back."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()
