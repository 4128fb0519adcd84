"""The driver's garbage collector while experiments run (dasktune._gc)."""

from __future__ import annotations

import gc

import pytest

from dasktune._gc import frozen_heap


@pytest.fixture
def unfrozen():
    """These tests need a heap nobody froze; they leave it as they found it."""
    if gc.get_freeze_count():
        pytest.skip("something in this process froze the heap already")
    yield
    gc.unfreeze()


def tracked(obj) -> bool:
    """Whether a collection would walk ``obj`` (frozen objects are in none of its lists)."""
    return any(o is obj for o in gc.get_objects())


class Cycle:
    def __init__(self):
        self.me = self


def test_objects_that_exist_at_the_start_stay_out_of_collections_until_the_end(unfrozen):
    before = Cycle()
    assert tracked(before)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        assert not tracked(before)  # no collection walks it
        during = Cycle()
        assert tracked(during)
    assert gc.get_freeze_count() == 0
    assert tracked(before)  # handed back to the collector


def test_garbage_made_during_the_experiment_is_collected(unfrozen):
    with frozen_heap():
        Cycle()
        assert gc.collect() >= 1


def test_overlapping_experiments_keep_it_frozen_until_the_last_ends(unfrozen):
    first, second = frozen_heap(), frozen_heap()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_by_someone_else_is_left_alone(unfrozen):
    theirs = Cycle()
    gc.freeze()
    with frozen_heap():
        during = Cycle()
        assert tracked(during)
    assert not tracked(theirs)  # not unfrozen behind their back
    assert tracked(during)  # and nothing frozen beside theirs


def test_a_disabled_collector_is_left_alone(unfrozen):
    gc.disable()
    try:
        with frozen_heap():
            assert gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_an_error_in_the_experiment_still_hands_the_objects_back(unfrozen):
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("the experiment failed")
    assert gc.get_freeze_count() == 0
