"""``flowrra worker`` tunes the garbage collector of its process unless told not to."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from flowrra.cli import GC_YOUNG_THRESHOLD, _child_command, build_parser, tune_garbage_collector


@pytest.fixture
def python_defaults() -> Iterator[None]:
    """CPython's default thresholds for the test; the collector is put back afterwards
    (the test process must not stay tuned)."""
    threshold = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("python_defaults")
def test_tuning_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    tune_garbage_collector()
    assert gc.get_freeze_count() > 1000, "the objects of the started process were not frozen"
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("python_defaults")
def test_tuning_keeps_a_higher_or_disabled_threshold() -> None:
    gc.set_threshold(50_000, 10, 10)
    tune_garbage_collector()
    assert gc.get_threshold() == (50_000, 10, 10)
    gc.set_threshold(0, 10, 10)  # automatic collection off
    tune_garbage_collector()
    assert gc.get_threshold() == (0, 10, 10)


def test_no_gc_tuning_reaches_every_worker_process() -> None:
    parser = build_parser()
    tuned = parser.parse_args(["worker", "pkg.mod:app", "--processes", "2"])
    assert tuned.gc_tuning is True
    assert "--no-gc-tuning" not in _child_command(tuned)
    plain = parser.parse_args(["worker", "pkg.mod:app", "--processes", "2", "--no-gc-tuning"])
    assert plain.gc_tuning is False
    assert "--no-gc-tuning" in _child_command(plain)
