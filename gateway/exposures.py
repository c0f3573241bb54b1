"""The exposure log: one `exposures` row (plus its `exposure_items`) per served response.

Requests only put a record on a bounded in-memory queue; a background thread writes batches
every `flush_interval` seconds (or `batch_size` records). When the database is unreachable a
batch is appended to a JSON-lines spool file under `spool_dir` (fsynced) and replayed once the
database answers again, and at start-up (spools left by a crashed process). Inserts are
`ON CONFLICT DO NOTHING` by request id, so a replay after a partial write, a crash mid-replay
or two processes replaying the same file never duplicates a row. If the queue is full the
request thread spools the record itself instead of waiting. Each process holds an exclusive
`flock` on the spool file it appends to, so another process never replays a file still being
written.

The log also carries `experiment_configs` rows, so a config loaded while the database is down
is stored when it returns, exactly like exposures.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from feedlab.gateway.dbutil import insert_ignore
from feedlab.storage.schema import experiment_configs, exposure_items, exposures
from sqlalchemy import Engine, text

log = logging.getLogger("feedlab.exposures")

EXPOSURE = "exposure"
CONFIG = "config"


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
    db_errors: int = 0
    last_error: str | None = field(default=None)


class ExposureLog:
    """Non-blocking, loss-free writer of exposure and config rows (see module docstring)."""

    def __init__(
        self,
        engine: Engine,
        spool_dir: str | Path,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        flush_interval: float = 0.1,
        retry_interval: float = 1.0,
    ) -> None:
        self.engine = engine
        self.spool_dir = Path(spool_dir)  # created on first use: most runs never spool
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.stats = ExposureStats()
        self._queue: queue.Queue[ExposureRecord | ConfigRecord] = queue.Queue(max_queue)
        self._spool_lock = threading.Lock()
        self._spool_file: IO[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db_down_until = 0.0
        self._next_replay = 0.0

    # request side ---------------------------------------------------------------------

    def submit(self, record: ExposureRecord | ConfigRecord) -> None:
        """Hand a record to the writer; never waits for the database."""
        if self._thread is None or self._stop.is_set():
            self._spool([record])
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._spool([record])

    def depth(self) -> int:
        return self._queue.qsize()

    def pending_spool(self) -> int:
        """Number of spool files waiting for replay."""
        return len(list(self.spool_dir.glob("*.jsonl")))

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="exposure-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 15.0) -> None:
        """Flush everything queued (to the database, or to the spool) and stop the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_spool_file()

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
                self._write_or_spool(batch)
                for _ in batch:
                    self._queue.task_done()
            if time.monotonic() >= self._next_replay:
                self._replay()
            if self._stop.is_set() and self._queue.empty():
                self._replay()
                return

    def _take(self) -> list[ExposureRecord | ConfigRecord]:
        """Up to a batch of queued records, after one flush interval unless a full batch is
        already waiting: the writer wakes once per interval, not once per request (a wake-up
        per record made request threads hand over the GIL hundreds of times a second)."""
        if self._queue.qsize() < self.batch_size:
            self._stop.wait(self.flush_interval)
        batch: list[ExposureRecord | ConfigRecord] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_or_spool(self, batch: list[ExposureRecord | ConfigRecord]) -> None:
        if time.monotonic() < self._db_down_until:
            self._spool(batch)
            return
        try:
            self._write(batch)
            self.stats.written += sum(isinstance(r, ExposureRecord) for r in batch)
        except Exception as exc:  # any driver/network error: keep the rows on disk
            self._db_failed(exc)
            self._spool(batch)

    def _db_failed(self, exc: Exception) -> None:
        self.stats.db_errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self._db_down_until = time.monotonic() + self.retry_interval
        self._next_replay = self._db_down_until
        log.warning("exposure log: database unavailable, spooling (%s)", self.stats.last_error)

    def _write(self, batch: list[ExposureRecord | ConfigRecord]) -> None:
        exp_rows: list[dict[str, Any]] = []
        item_rows: list[dict[str, Any]] = []
        cfg_rows: list[dict[str, Any]] = []
        for r in batch:
            if isinstance(r, ConfigRecord):
                cfg_rows.append(asdict(r))
                continue
            row = asdict(r)
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
        with self.engine.begin() as conn:
            insert_ignore(conn, experiment_configs, cfg_rows, ["config_version"])
            insert_ignore(conn, exposures, exp_rows, ["request_id"])
            insert_ignore(conn, exposure_items, item_rows, ["request_id", "position"])

    # spool ------------------------------------------------------------------------------

    def _spool(self, records: list[ExposureRecord | ConfigRecord]) -> None:
        data = b"".join(_dumps(r) for r in records)
        with self._spool_lock:
            try:
                if self._spool_file is None:
                    self.spool_dir.mkdir(parents=True, exist_ok=True)
                    path = self.spool_dir / f"exposures-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
                    self._spool_file = open(path, "ab")  # noqa: SIM115 - kept open, locked
                    fcntl.flock(self._spool_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._spool_file.write(data)
                self._spool_file.flush()
                os.fsync(self._spool_file.fileno())
            except OSError as exc:
                self.stats.dropped += sum(isinstance(r, ExposureRecord) for r in records)
                log.error("exposure log: cannot spool %d records: %s", len(records), exc)
                return
        self.stats.spooled += sum(isinstance(r, ExposureRecord) for r in records)

    def _close_spool_file(self) -> None:
        with self._spool_lock:
            if self._spool_file is not None:
                self._spool_file.close()
                self._spool_file = None

    def _replay(self) -> None:
        """Insert every spool file nobody is writing to, then delete it."""
        self._next_replay = time.monotonic() + self.retry_interval
        files = sorted(self.spool_dir.glob("*.jsonl"))
        if not files:
            return
        try:
            with self.engine.connect() as conn:
                conn.execute(text("select 1"))
        except Exception as exc:  # still down: keep appending to the same spool file
            self._db_failed(exc)
            return
        self._close_spool_file()
        for path in files:
            try:
                fh = open(path, "rb")  # noqa: SIM115 - closed in finally
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another live process is appending to it
                if not path.exists():
                    continue  # replayed by another process meanwhile
                records = _loads_all(fh.read(), path)
                for i in range(0, len(records), self.batch_size):
                    self._write(records[i : i + self.batch_size])
                path.unlink()
                n = sum(isinstance(r, ExposureRecord) for r in records)
                self.stats.replayed += n
                log.info("exposure log: replayed %d exposures from %s", n, path.name)
            except Exception as exc:  # database still down: keep the file for later
                self._db_failed(exc)
                return
            finally:
                fh.close()


def _dumps(record: ExposureRecord | ConfigRecord) -> bytes:
    kind = CONFIG if isinstance(record, ConfigRecord) else EXPOSURE
    return orjson.dumps({"kind": kind, **asdict(record)}) + b"\n"


def _loads_all(data: bytes, path: Path) -> list[ExposureRecord | ConfigRecord]:
    out: list[ExposureRecord | ConfigRecord] = []
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
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # a torn last line from a crash mid-write; the rest of the file is still good
            log.error("exposure spool %s line %d unreadable, skipped: %s", path, n, exc)
    return out
