"""Shared fixtures and markers: ``realdata`` (../shared/data) and ``gpu`` (CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vbmkit.allocator import tune_cpu_allocator

# the allocator the CLI and the pipeline use (vbmkit.allocator): tests run as users do
tune_cpu_allocator()

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


_RELIABILITY: dict[str, int] = {}


def pytest_runtest_logreport(report):
    """Count the reliability cases by command (each records a ``command`` property; xdist
    carries user properties to the controller, so the count covers every worker)."""
    if report.when != "call" or "tests/reliability/" not in report.nodeid.replace("\\", "/"):
        return
    for key, value in report.user_properties:
        if key == "command":
            _RELIABILITY[value] = _RELIABILITY.get(value, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if _RELIABILITY:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(_RELIABILITY.items()))
        terminalreporter.write_line(f"reliability cases by command ({sum(_RELIABILITY.values())} checks): {counts}")


def pytest_collection_modifyitems(config, items):
    skip_data = pytest.mark.skip(reason=f"realdata: {SHARED_DATA} is absent (only present in CI and development)")
    skip_gpu = pytest.mark.skip(reason="gpu: torch sees no CUDA device")
    for item in items:
        if "realdata" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_data)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep each test worker to one thread: the suite runs with ``-n 2`` on 2 cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
