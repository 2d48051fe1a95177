"""SGDTrainer.run's host-sync cadence (``_SyncSchedule``): when it falls back to one epoch per
sync.  The rule, checked here on simulated sync durations: syncs longer than
``max_sync_seconds`` switch the cadence to one epoch only two in a row, and syncs that compile
(the first, and those marked ``compiling``) are not counted.  Counting the first harvest's
compile had put whole paper-scale runs on one epoch per sync (2.3-2.5x slower, README).

Deterministic: the durations are simulated by moving the sync's start back; the real time
between ``start`` and ``end`` (microseconds) is the only noise, and every simulated duration is
at least 0.1 s from the limit."""
from __future__ import annotations

import pytest

from bayes_sgd.samplers._sgd import SGDResult, _SyncSchedule
from bayes_sgd.counting import FunctionCounter

MAX_S = 2.0


def _sync(sched: _SyncSchedule, seconds: float, *, compiling: bool = False) -> int:
    sched.start()
    sched.t0 -= seconds  # the sync took `seconds` (no sleeping in a test)
    if compiling:
        sched.compiling()
    sched.end(SGDResult(FunctionCounter(4)), 0, 0, 0, None, None)
    return sched.epochs


# (durations in s; "c" = a sync marked compiling), the epochs per sync after each sync
CASES = [
    ("first_sync_compiles", [3.0, 0.1, 0.1], [8, 8, 8]),
    ("first_harvest_compiles", [3.0, 0.1, (3.1, "c"), 0.1, 0.1], [8, 8, 8, 8, 8]),
    ("one_hiccup", [3.0, 0.1, 2.5, 0.1, 2.5, 0.1], [8, 8, 8, 8, 8, 8]),
    ("two_long_in_a_row", [3.0, 0.1, 2.5, 2.5, 0.1], [8, 8, 8, 1, 1]),
    ("compile_between_long", [3.0, 2.5, (3.0, "c"), 2.5, 0.1], [8, 8, 8, 1, 1]),
    ("just_under_the_limit", [3.0, MAX_S - 0.1, MAX_S - 0.1, MAX_S - 0.1], [8, 8, 8, 8]),
]


@pytest.mark.parametrize("durations,want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_sync_schedule_falls_back_to_one_epoch(durations, want):
    sched = _SyncSchedule(8, MAX_S)
    got = [_sync(sched, d[0], compiling=True) if isinstance(d, tuple) else _sync(sched, d)
           for d in durations]
    assert got == want
    assert sched.slow == (want[-1] == 1)
