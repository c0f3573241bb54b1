"""The exposure log: one `exposures` row (plus its `exposure_items`) per served response.

Two durability modes (`Settings.exposure_durability`):

- `async` (default): requests put a record on a bounded in-memory queue and answer at once; a
  background thread writes batches every `flush_interval` seconds (or `batch_size` records).
  A `kill -9` loses what is queued and the batch being written: at most `flush_interval` plus
  one bounded write (`db_timeout`) of traffic, ~0.1 s with a healthy database.
- `sync`: each record is appended to the local journal (a spool segment) and fsynced before the
  response; concurrent requests share one fsync (group commit). The writer rotates the segment
  every `flush_interval` and writes it to the database, then deletes it: 0 lost on `kill -9`.

When the database is unreachable a batch is appended to a JSON-lines spool file under
`spool_dir` (fsynced) and replayed once the database answers again, and at start-up (spools
left by a crashed process). Every database call is bounded (`db_timeout`, see
`dbutil.bounded`), so a hung database turns into spooling, never into a stuck writer; on
shutdown whatever the writer could not store within `close`'s grace period is spooled. Inserts
are `ON CONFLICT DO NOTHING` by request id, so a replay after a partial write, a crash
mid-replay or two processes replaying the same file never duplicates a row. A record the
database refuses for its content (too long, out of range, ...) is moved, with the reason, to
`spool_dir/dead-letter/dead-letter.jsonl` and counted; the records around it are written. Each
process holds an exclusive `flock` on the segment it appends to, so another process never
replays a file still being written.

The log also carries `experiment_configs` rows, so a config loaded while the database is down
is stored when it returns, exactly like exposures.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson
from feedlab.gateway.dbutil import bounded, insert_ignore
from feedlab.storage.clock import utcnow
from feedlab.storage.schema import experiment_configs, exposure_items, exposures
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

log = logging.getLogger("feedlab.exposures")

EXPOSURE = "exposure"
CONFIG = "config"
DEAD_LETTER = "dead-letter"
Durability = Literal["async", "sync"]


@dataclass(slots=True)
class ExposureRecord:
    request_id: str
    ts: datetime
    served_at: datetime
    user_id: int
    experiment: str | None
    config_version: str
    exp_group: str
    model: str
    model_version: str | None
    post_ids: list[int]
    fallback: bool
    latency_ms: float
    teams: list[str] | None = None
    """Interleaving: the arm that contributed each served post (in `post_ids` order)."""
    seed: int | None = None
    """Interleaving: the team-draft coin's seed, so the merge can be replayed."""
    qa: bool = False


@dataclass(slots=True)
class ConfigRecord:
    config_version: str
    loaded_at: datetime
    yaml: str


@dataclass
class ExposureStats:
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0
    dead_lettered: int = 0
    db_errors: int = 0
    last_error: str | None = field(default=None)


Record = ExposureRecord | ConfigRecord


def _exposures(records: Sequence[Record]) -> int:
    return sum(isinstance(r, ExposureRecord) for r in records)


def _is_content_error(exc: Exception) -> bool:
    """The database (or the driver, binding values) refused this data, not the connection:
    retrying the same rows can never succeed."""
    if isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError | TypeError | ValueError):
        return True  # TypeError / ValueError: a record whose rows cannot even be built
    return isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError)


@dataclass
class _Ticket:
    done: bool = False
    error: OSError | None = None


class Journal:
    """Append-only JSON-lines segments in `folder`: `append` returns once the data is on disk
    (fsynced); appends that arrive while one fsync runs share the next one (group commit).
    `rotate` closes the current segment so it can be replayed; the next append opens a new
    one. Segment names sort in creation order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder  # created on first use: most async runs never spool
        self._cond = threading.Condition()
        self._pending: list[tuple[bytes, _Ticket]] = []
        self._flushing = False
        self._file: IO[bytes] | None = None
        self._path: Path | None = None

    def append(self, data: bytes) -> None:
        """Write `data` durably; raises OSError if the disk refuses it."""
        ticket = _Ticket()
        with self._cond:
            self._pending.append((data, ticket))
            while not ticket.done:
                if self._flushing:
                    self._cond.wait()
                    continue
                batch, self._pending = self._pending, []
                self._flushing = True
                self._cond.release()
                error = None
                try:
                    self._write(b"".join(d for d, _ in batch))
                except OSError as exc:
                    error = exc
                finally:
                    self._cond.acquire()
                    self._flushing = False
                for _, t in batch:
                    t.done, t.error = True, error
                self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def rotate(self) -> Path | None:
        """Close the current segment (None if there was none) and return its path."""
        with self._cond:
            while self._flushing:
                self._cond.wait()
            path, fh = self._path, self._file
            self._path = self._file = None
        if fh is not None:
            fh.close()
        return path

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"exposures-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            fh = open(self.folder / name, "ab")  # noqa: SIM115 - kept open, locked
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _fsync_dir(self.folder)
            self._file, self._path = fh, self.folder / name
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())


class ExposureLog:
    """Bounded, loss-free writer of exposure and config rows (see module docstring)."""

    def __init__(
        self,
        engine: Engine,
        spool_dir: str | Path,
        *,
        durability: Durability = "async",
        max_queue: int = 100_000,
        batch_size: int = 500,
        flush_interval: float = 0.1,
        retry_interval: float = 1.0,
        db_timeout: float = 5.0,
    ) -> None:
        self.engine = engine
        self.spool_dir = Path(spool_dir)
        self.dead_letter_path = self.spool_dir / DEAD_LETTER / "dead-letter.jsonl"
        self.durability = durability
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.db_timeout = db_timeout
        self.stats = ExposureStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue[Record] = queue.Queue(max_queue)
        self._journal = Journal(self.spool_dir)
        self._dead_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: list[Record] = []
        self._own_segments: set[Path] = set()
        self._db_down_until = 0.0
        self._next_replay = 0.0

    # request side ---------------------------------------------------------------------

    def submit(self, record: Record) -> None:
        """Hand a record to the writer. In `async` mode this never waits; in `sync` mode it
        returns once the record is on disk (use `log` from the event loop)."""
        writer_gone = self._thread is None or self._stop.is_set()
        direct = self.durability == "sync" or writer_gone
        if direct and (self._spool([record], count_drop=writer_gone) or writer_gone):
            return
        try:  # async mode, or a sync journal the disk refused: held in memory
            self._queue.put_nowait(record)
        except queue.Full:
            self._spool([record])

    async def log(self, record: Record) -> None:
        """`submit` from the event loop: the `sync` fsync runs in a worker thread."""
        if self.durability == "sync":
            await asyncio.to_thread(self.submit, record)
        else:
            self.submit(record)

    def depth(self) -> int:
        return self._queue.qsize()

    def pending_spool(self) -> int:
        """Number of spool files waiting for replay."""
        return len(list(self.spool_dir.glob("*.jsonl")))

    def database_up(self) -> bool:
        """False while the last database call of the writer failed (it spools meanwhile)."""
        return time.monotonic() >= self._db_down_until

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="exposure-writer", daemon=True)
        self._thread.start()

    def close(self, grace: float = 8.0) -> None:
        """Store everything queued within `grace` seconds; spool (fsynced) what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace)
            if self._thread.is_alive():  # stuck on the database: keep its rows on disk
                left = list(self._inflight) + self._drain()
                log.error("exposure log: shutdown grace over, spooling %d records", len(left))
                self._spool(left)
        self._journal.rotate()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and the spool replayed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0 and self.pending_spool() == 0:
                return True
            self._next_replay = 0.0
            time.sleep(0.02)
        return False

    # writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        self._replay()
        while True:
            batch = self._take()
            if batch:
                self._inflight = batch
                self._write_or_spool(batch)
                self._inflight = []
                for _ in batch:
                    self._queue.task_done()
            if self.durability == "sync" or time.monotonic() >= self._next_replay:
                self._replay()
            if self._stop.is_set() and self._queue.empty():
                self._replay()
                return

    def _take(self) -> list[Record]:
        """Up to a batch of queued records, after one flush interval unless a full batch is
        already waiting: the writer wakes once per interval, not once per request (a wake-up
        per record made request threads hand over the GIL hundreds of times a second)."""
        if self._queue.qsize() < self.batch_size:
            self._stop.wait(self.flush_interval)
        batch: list[Record] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _drain(self) -> list[Record]:
        out: list[Record] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def _write_or_spool(self, batch: list[Record]) -> None:
        if not self.database_up():
            self._spool(batch)
            return
        try:
            self._count(written=self._store(batch))
        except Exception as exc:  # any driver/network error: keep the rows on disk
            self._db_failed(exc)
            self._spool(batch)

    def _db_failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        with self._stats_lock:
            self.stats.db_errors += 1
            self.stats.last_error = error
        self._db_down_until = time.monotonic() + self.retry_interval
        self._next_replay = self._db_down_until
        log.warning("exposure log: database unavailable, spooling (%s)", error)

    def _store(self, records: Sequence[Record]) -> int:
        """Write `records`; a record the database refuses for its content goes to the dead
        letter file (found by halving the batch), the others are written. Connection errors
        raise. Returns the number of exposures written."""
        try:
            self._write(records)
            return _exposures(records)
        except Exception as exc:
            if not _is_content_error(exc):
                raise
            if len(records) == 1:
                self._dead_letter(records[0], exc)
                return 0
            mid = len(records) // 2
            return self._store(records[:mid]) + self._store(records[mid:])

    def _write(self, batch: Sequence[Record]) -> None:
        exp_rows: list[dict[str, Any]] = []
        item_rows: list[dict[str, Any]] = []
        cfg_rows: list[dict[str, Any]] = []
        for r in batch:
            if isinstance(r, ConfigRecord):
                cfg_rows.append(_fields(r))
                continue
            row = _fields(r)
            teams = row.pop("teams") or [None] * len(r.post_ids)
            exp_rows.append(row)
            item_rows.extend(
                dict(
                    request_id=r.request_id,
                    position=i,
                    post_id=p,
                    user_id=r.user_id,
                    ts=r.ts,
                    team=team,
                )
                for i, (p, team) in enumerate(zip(r.post_ids, teams, strict=True))
            )
        with bounded(self.engine, self.db_timeout, begin=True) as conn:
            insert_ignore(conn, experiment_configs, cfg_rows, ["config_version"])
            insert_ignore(conn, exposures, exp_rows, ["request_id"])
            insert_ignore(conn, exposure_items, item_rows, ["request_id", "position"])

    # spool and dead letters -----------------------------------------------------------

    def _spool(self, records: list[Record], count_drop: bool = True) -> bool:
        """Append to the journal (fsynced); False (counted as dropped unless the caller keeps
        the records) if the disk fails."""
        if not records:
            return True
        try:
            self._journal.append(b"".join(_dumps(r) for r in records))
        except OSError as exc:
            if count_drop:
                self._count(dropped=_exposures(records))
            log.error("exposure log: cannot spool %d records: %s", len(records), exc)
            return False
        self._count(spooled=_exposures(records))
        return True

    def _dead_letter(self, record: Record | bytes, exc: Exception | str) -> None:
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}".splitlines()[0]
        if isinstance(record, bytes):
            body: object = record.decode("utf-8", "replace")
        else:
            body = orjson.loads(_dumps(record))
        entry = {"at": utcnow(), "reason": reason, "record": body}
        with self._dead_lock:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.dead_letter_path, "ab") as fh:
                fh.write(orjson.dumps(entry) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        self._count(dead_lettered=1)
        log.error("exposure log: record moved to %s: %s", self.dead_letter_path, reason)

    def _replay(self) -> None:
        """Insert every spool file nobody is writing to, then delete it; stop at the first
        connection failure (the file stays for the next try)."""
        if not self.database_up():
            return
        self._next_replay = time.monotonic() + self.retry_interval
        if not self.pending_spool():
            return
        own = self._journal.rotate()
        if own is not None and self.durability == "sync":
            self._own_segments.add(own)
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            try:
                self._replay_file(path)
            except Exception as exc:  # database down again: keep the file for later
                self._db_failed(exc)
                return

    def _replay_file(self, path: Path) -> None:
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed in finally
        except FileNotFoundError:
            return
        except OSError as exc:  # unreadable: set it aside, go on with the others
            self._set_aside(path, exc)
            return
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another live process is appending to it
            if not path.exists():
                return  # replayed by another process meanwhile
            try:
                data = fh.read()
            except OSError as exc:
                self._set_aside(path, exc)
                return
            records, bad = _loads_all(data, path)
            for line, reason in bad:
                self._dead_letter(line, reason)
            stored = 0
            for i in range(0, len(records), self.batch_size):
                stored += self._store(records[i : i + self.batch_size])
            path.unlink()
            _fsync_dir(path.parent)
        finally:
            fh.close()
        if path in self._own_segments:
            self._own_segments.discard(path)
            self._count(written=stored)
        else:
            self._count(replayed=stored)
            log.info("exposure log: replayed %d exposures from %s", stored, path.name)

    def _set_aside(self, path: Path, exc: OSError) -> None:
        target = self.dead_letter_path.parent / path.name
        log.error("exposure spool %s unreadable (%s), moved to %s", path, exc, target)
        self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, n in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)


def _fsync_dir(folder: Path) -> None:
    """Make a file creation or removal in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dumps(record: Record) -> bytes:
    kind = CONFIG if isinstance(record, ConfigRecord) else EXPOSURE
    return orjson.dumps({"kind": kind, **_fields(record)}) + b"\n"


def _fields(record: Record) -> dict[str, Any]:
    """The record as a dict of its fields, without `asdict`'s deep copy of every list (the
    writer's largest cost per exposure); records are never changed once submitted."""
    return {name: getattr(record, name) for name in record.__slots__}


def _loads_all(data: bytes, path: Path) -> tuple[list[Record], list[tuple[bytes, str]]]:
    """The records of a spool file, and its unreadable lines with the reason (a torn last
    line from a crash mid-write; the rest of the file is still good)."""
    out: list[Record] = []
    bad: list[tuple[bytes, str]] = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            kind = row.pop("kind")
            if kind == CONFIG:
                row["loaded_at"] = datetime.fromisoformat(row["loaded_at"])
                out.append(ConfigRecord(**row))
            else:
                row["ts"] = datetime.fromisoformat(row["ts"])
                row["served_at"] = datetime.fromisoformat(row["served_at"])
                out.append(ExposureRecord(**row))
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            bad.append((line, f"{path.name} line {n} unreadable: {exc}"))
    return out, bad
