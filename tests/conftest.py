"""Shared fixtures. Tests that need torch import it themselves; runtime tests must not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return Path(__file__).parent / "data" / "torchvision_parity"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Statistics, backend choices and Triton's backend folder go to a fresh cache, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETINA_EDGE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
