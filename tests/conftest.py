"""Fixtures shared by the tests (helpers are in helpers.py) and the `e2e` marker."""

import os

import pytest
from helpers import SHARED_DATA


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: starts the trainer or another program in a process (left out of `make check`)"
    )


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"real datasets not available at {SHARED_DATA}")
    return SHARED_DATA
