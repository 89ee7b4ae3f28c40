from __future__ import annotations

import pytest

from tests.indexer.helpers import HistEmbedder


@pytest.fixture
def hist() -> HistEmbedder:
    return HistEmbedder()
