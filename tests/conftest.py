"""Shared pytest fixtures. Helpers that are plain code live in helper modules
(``tests/fakes.py``, ``tests/agent_fixtures.py``, ``tests/release_fixture.py``,
``tests/strategies.py``); no test imports another test module."""

from __future__ import annotations

import pytest

from tests.agent_fixtures import make_phantom_index


@pytest.fixture(scope="session")
def phantom_index(tmp_path_factory):
    """(index dir, dataset): a 40-study phantom release at 64 px and its fake-encoder index,
    built once per session; tests must not write into it."""
    return make_phantom_index(tmp_path_factory.mktemp("phantom-index"))
