"""Fixtures of the reliability suite: a sandbox with tiny inputs and user files."""

from __future__ import annotations

import pytest

from tests.reliability.harness import Sandbox, make_sandbox


@pytest.fixture
def box(tmp_path, record_property) -> Sandbox:
    """A fresh sandbox; ``box.record(command)`` tags the case for the count by command."""
    return make_sandbox(tmp_path / "sandbox", lambda command: record_property("command", command))
