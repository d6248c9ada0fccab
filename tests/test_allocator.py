"""vbmkit.allocator: glibc malloc keeps freed memory for reuse, unless VBMKIT_MALLOC=default."""

import os
import subprocess
import sys

import pytest

from vbmkit.allocator import SETTINGS, tune_cpu_allocator

_GLIBC = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION") or "")
_CHILD = "from vbmkit.allocator import tune_cpu_allocator as t; print(t(), t())"


def _run_child(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "VBMKIT_MALLOC"} | env
    return subprocess.run([sys.executable, "-c", _CHILD], env=environ, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not _GLIBC, reason="the settings are glibc's mallopt parameters")
def test_tuned_once_per_process_on_glibc():
    assert _run_child() == "True True"
    assert tune_cpu_allocator() is (os.environ.get("VBMKIT_MALLOC", "").strip().lower() != "default")


def test_opt_out_leaves_malloc_alone():
    assert _run_child(VBMKIT_MALLOC="default") == "False False"


def test_settings_disable_mmap_and_bound_what_is_kept():
    values = dict(SETTINGS)
    assert values[-4] == 0  # M_MMAP_MAX: large tensors come from the heap, reused after free
    assert values[-1] == 1 << 30  # M_TRIM_THRESHOLD: at most 1 GiB of free heap is kept
