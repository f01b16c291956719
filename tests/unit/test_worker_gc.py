"""``flowrra worker`` tunes the garbage collector of its process unless told not to."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from flowrra.cli import GC_YOUNG_THRESHOLD, _child_command, build_parser, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Put the collector back as it was (the test process must not stay tuned)."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tuning_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    _, middle, old = gc.get_threshold()
    tune_garbage_collector()
    assert gc.get_freeze_count() > 1000, "the objects of the started process were not frozen"
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, middle, old)


def test_no_gc_tuning_reaches_every_worker_process() -> None:
    parser = build_parser()
    tuned = parser.parse_args(["worker", "pkg.mod:app", "--processes", "2"])
    assert tuned.gc_tuning is True
    assert "--no-gc-tuning" not in _child_command(tuned)
    plain = parser.parse_args(["worker", "pkg.mod:app", "--processes", "2", "--no-gc-tuning"])
    assert plain.gc_tuning is False
    assert "--no-gc-tuning" in _child_command(plain)
