"""Per-day fits (co-visitation, any candidate model refitted daily) kept off the request path.

The fit of day D is made from the events before D's midnight, so it is point-in-time for every
request on day D. Two modes:

- blocking (the default: training and offline evaluation): `at` makes a missing fit on the
  spot, so each cutoff's rows use exactly its day's fit;
- background (serving; `registry.load_warm` switches a loaded model's fits to it): a request
  never waits for a fit. Staleness rule: a request at t uses the fit of t's midnight when it
  is ready, else the latest fit of an EARLIER midnight (stale by a day, still point-in-time:
  it holds only events before a midnight <= t), never the fit of a later midnight (that
  would hold events at or after t); the missing fit is queued on the refit thread and swapped
  in (one dict assignment under a lock) when done. Only when no earlier fit exists at all
  (the warm-up request of a load) is the fit made in place. After each fit of the current
  (wall-clock) day a timer queues the next day's fit at the next midnight, so it is usually
  ready before the first request of the day.

One daemon thread runs every queued fit, one at a time: a fit uses at most one core (scipy's
sparse products and numpy's sorts release the GIL), the other stays with the requests.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar, runtime_checkable

from feedlab.storage.clock import utcnow

log = logging.getLogger("feedlab.refit")

T = TypeVar("T")
DAY = timedelta(days=1)
TIMER_DELAY = timedelta(seconds=1)
"""After midnight before the next day's fit starts (events stamped just before it arrive)."""

_runner: ThreadPoolExecutor | None = None
_runner_lock = threading.Lock()


def _submit(job: Callable[[], None]) -> Future[None]:
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedlab-refit")
        return _runner.submit(job)


def midnight(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day)


class DailyRefit(Generic[T]):
    """The fits of the last `KEEP` days of `fit(midnight)`, by the rules of the module doc.

    A candidate source or feature block that keeps per-day state holds one of these in a
    field (see `refits_of`), so serving switches it to background mode with the others."""

    KEEP = 4

    def __init__(self, fit: Callable[[datetime], T], name: str = "daily fit") -> None:
        self._fit = fit
        self.name = name
        self.background = False
        self._fits: OrderedDict[datetime, T] = OrderedDict()
        self._pending: dict[datetime, Future[None]] = {}
        self._lock = threading.Lock()
        self._computing = threading.Lock()
        self._timer: threading.Timer | None = None

    def at(self, at: datetime) -> T:
        """The fit to use for a request at `at` (see the staleness rule)."""
        day = midnight(at)
        with self._lock:
            fit = self._fits.get(day)
            if fit is not None:
                self._fits.move_to_end(day)
                return fit
            if self.background:
                earlier = [d for d in self._fits if d < day]
                if earlier:
                    self._queue(day)
                    return self._fits[max(earlier)]
        return self._make(day)

    def days(self) -> list[datetime]:
        """The midnights with a fit ready."""
        with self._lock:
            return sorted(self._fits)

    def pending(self, day: datetime) -> Future[None] | None:
        """The queued or running fit of `day`'s midnight, if any (tests wait on it)."""
        with self._lock:
            return self._pending.get(midnight(day))

    def _make(self, day: datetime) -> T:
        with self._computing:  # two threads asking for the same day fit it once
            with self._lock:
                fit = self._fits.get(day)
            if fit is None:
                fit = self._fit(day)
                with self._lock:
                    self._fits[day] = fit
                    while len(self._fits) > self.KEEP:
                        self._fits.popitem(last=False)
            if self.background and day == midnight(utcnow()):
                self._arm_timer(day + DAY)
            return fit

    def _queue(self, day: datetime) -> None:
        """Queue the fit of `day` (caller holds `_lock`)."""
        if day not in self._pending:
            self._pending[day] = _submit(lambda: self._run(day))

    def _run(self, day: datetime) -> None:
        try:
            self._make(day)
        except Exception:  # the stale fit keeps serving; the next request queues it again
            log.exception("%s for %s failed", self.name, day.date())
        finally:
            with self._lock:
                self._pending.pop(day, None)

    def _arm_timer(self, day: datetime) -> None:
        """Queue `day`'s fit at that midnight; the timer holds only a weak reference, so a
        model replaced by a reload is not kept alive (nor refitted) by it."""
        if self._timer is not None:
            self._timer.cancel()
        ref = weakref.ref(self)

        def fire() -> None:
            refit = ref()
            if refit is not None:
                with refit._lock:
                    refit._queue(day)

        delay = (day + TIMER_DELAY - utcnow()).total_seconds()
        self._timer = threading.Timer(max(delay, 0.0), fire)
        self._timer.daemon = True
        self._timer.start()


def refits_of(*parts: object) -> list[DailyRefit]:
    """The `DailyRefit`s held in a field of any of `parts` (sources, feature blocks), each
    once: a source and a block may share one (the co-visitation fit)."""
    found: dict[int, DailyRefit] = {}
    for part in parts:
        fields = getattr(part, "__dict__", {}).values()
        for value in (part, *fields):
            if isinstance(value, DailyRefit):
                found.setdefault(id(value), value)
    return list(found.values())


@runtime_checkable
class Refitting(Protocol):
    """A loaded model whose per-day fits serving switches to background mode."""

    def refits(self) -> list[DailyRefit]: ...


def serve_in_background(model: object) -> list[DailyRefit]:
    """Switch `model`'s per-day fits (if it has any) to background mode; returns them."""
    refits = model.refits() if isinstance(model, Refitting) else []
    for refit in refits:
        refit.background = True
    return refits
