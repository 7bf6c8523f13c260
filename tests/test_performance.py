"""The opt-in allocator tuning (its speed effect is measured in bench/, not here)."""

from __future__ import annotations

import platform

import pytest

from mlcalc import tune_memory_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")
def test_tuning_applies_on_glibc_and_can_be_repeated() -> None:
    assert tune_memory_allocator() is True
    assert tune_memory_allocator(64 * 2**20) is True


def test_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        tune_memory_allocator(0)
