"""One job at a time per output: a lease file created only if absent, renewed while the job runs.

Two jobs writing one output lose rows silently (one's ``--mode overwrite`` removes the frames the other
just committed, while its files rows stay ``ok``). So ``run`` and ``apply`` take ``OUTPUT/_lease.json``
before any work and refuse, naming the holder (host, pid, start time), when a live job holds it.

The lease is created only if absent: a hard link (atomic like ``O_EXCL``, and never seen half-written) on a
local disk, fsspec's ``pipe_file(mode="create")``
elsewhere (a conditional write: GCS ``ifGenerationMatch=0``, S3 ``If-None-Match: *``); the file is then read
back, so of two jobs that both believe they created it, only the one whose token it holds goes on. The holder
renews it every :data:`RENEW_S` seconds. A lease is *stale* when its holder is provably gone (same host, no
such process) or has not renewed it for :data:`STALE_S` seconds (a killed or lost machine);
``--mode resume`` and ``--mode overwrite`` take a stale lease over, ``--mode error`` refuses and says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from yamnet_beam.errors import UserError
from yamnet_beam.table.layout import LEASE
from yamnet_beam.table.output import OutputDir

_LOG = logging.getLogger(__name__)

# Tokens of the leases this process holds now: a lease naming this pid with another token was left by a job
# of this process that is over (it crashed before releasing it), so it is provably gone too.
_HELD_HERE: set[str] = set()
_HELD_LOCK = threading.Lock()

STALE_S = 600.0  # a lease not renewed for 10 minutes belongs to a dead job (renewed every minute while alive)
RENEW_S = 60.0


class LeaseHeldError(UserError):
    """Another job holds the output; the message names it and says what to do."""


@dataclass(frozen=True)
class Holder:
    """Who holds an output's lease: enough to find the job, and to tell a live one from a dead one."""

    host: str
    pid: int
    started: str  # ISO 8601, UTC
    renewed: float  # epoch seconds of the last renewal
    command: str
    token: str

    def describe(self) -> str:
        return f"yamnet-beam {self.command} on host {self.host}, pid {self.pid}, started {self.started}"

    @classmethod
    def parse(cls, raw: bytes) -> Holder | None:
        try:
            doc = json.loads(raw)
            return cls(
                str(doc["host"]), int(doc["pid"]), str(doc["started"]), float(doc["renewed"]), str(doc["command"]),
                str(doc["token"]),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None  # a lease written halfway (its writer died): nobody can be holding it


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class Lease:
    """The lease of one output for one job: :meth:`acquire` before work, then ``with lease:`` renews and releases."""

    def __init__(self, out: OutputDir, command: str, stale_s: float = STALE_S, renew_s: float = RENEW_S):
        self.out, self.command = out, command
        self.stale_s, self.renew_s = stale_s, renew_s
        self.path = out.path(LEASE)
        self.holder: Holder | None = None  # ours, once acquired
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- reading

    def current(self) -> Holder | None:
        """The lease's holder as stored, or None when there is no (readable) lease."""
        try:
            raw = self.out.fs.cat_file(self.path)
        except (FileNotFoundError, NotADirectoryError):  # no lease; or no directory to hold one
            return None
        return Holder.parse(raw)

    def why_stale(self, holder: Holder | None, now: float | None = None) -> str | None:
        """Why ``holder`` no longer holds the output (None: it may still be working)."""
        if holder is None:
            return "the lease file is unreadable (its writer died while writing it)"
        if holder.host == socket.gethostname() and not _process_alive(holder.pid):
            return f"pid {holder.pid} is no longer running on {holder.host}"
        if holder.host == socket.gethostname() and holder.pid == os.getpid():
            with _HELD_LOCK:
                if holder.token not in _HELD_HERE:
                    return f"this process (pid {holder.pid}) holds it no more: the job that took it has ended"
        age = (time.time() if now is None else now) - holder.renewed
        if age > self.stale_s:
            return f"it was last renewed {age:.0f} s ago (stale after {self.stale_s:.0f} s)"
        return None

    def _held(self, other: Holder, now: float) -> str:
        return (
            f"{self.out.uri} is in use by {other.describe()} (renewed {now - other.renewed:.0f} s ago): wait for it "
            "to finish or choose another --output; two jobs writing one output lose rows"
        )

    def check(self) -> None:
        """Raises :class:`LeaseHeldError` if a live job holds the output (reads only: for checks before work)."""
        other = self.current()
        if other is not None and self.why_stale(other) is None:
            raise LeaseHeldError(self._held(other, time.time()))

    # ---- taking and giving back

    def _create(self, holder: Holder) -> bool:
        """Writes the lease only if absent; True when it is ours (read back, so a lost race is seen)."""
        data = json.dumps(asdict(holder), sort_keys=True).encode()
        with _HELD_LOCK:  # ours from the moment it may exist: another thread must not take it for a dead one's
            _HELD_HERE.add(holder.token)
        ours = False
        try:
            ours = self._write_if_absent(data, holder.token)
        finally:
            if not ours:
                with _HELD_LOCK:
                    _HELD_HERE.discard(holder.token)
        return ours

    def _write_if_absent(self, data: bytes, token: str) -> bool:
        fs = self.out.fs
        fs.makedirs(self.out.root, exist_ok=True)
        try:
            if self.out.remote:
                fs.pipe_file(self.path, data, mode="create")  # a conditional write where the store has one
            else:  # written whole under a private name, then linked: O_EXCL's atomicity, never a half-written lease
                tmp = f"{self.path}.{token}"
                with open(tmp, "wb") as f:
                    f.write(data)
                try:
                    os.link(tmp, self.path)
                finally:
                    os.unlink(tmp)
        except FileExistsError:
            return False
        stored = self.current()
        return stored is not None and stored.token == token

    def acquire(self, take_over_stale: bool) -> Holder | None:
        """Takes the lease, or raises :class:`LeaseHeldError` naming the holder; returns a stale holder replaced."""
        now = time.time()
        mine = Holder(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=_dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(timespec="seconds"),
            renewed=now,
            command=self.command,
            token=uuid.uuid4().hex,
        )
        if self._create(mine):
            self._hold(mine)
            return None
        other = self.current()
        stale = self.why_stale(other)
        where = self.out.uri
        if stale is None:
            raise LeaseHeldError(self._held(other, now))
        if not take_over_stale:
            who = other.describe() if other else "a job"
            raise LeaseHeldError(
                f"{where} was left by {who}, which is gone ({stale}): pass --mode resume to finish its work "
                "or --mode overwrite to start again"
            )
        _LOG.warning("Taking over the lease of %s from %s: %s", where, other.describe() if other else "?", stale)
        self.out.fs.rm(self.path)
        if not self._create(mine):  # another job took it over first
            winner = self.current()
            raise LeaseHeldError(
                f"{where} was taken over just now by {winner.describe() if winner else 'another job'}: "
                "wait for it to finish or choose another --output"
            )
        self._hold(mine)
        return other

    def _hold(self, mine: Holder) -> None:
        self.holder = mine  # its token is in _HELD_HERE since _create

    def renew(self) -> None:
        """Rewrites the lease with the time now, if it is still ours (never over another job's)."""
        if self.holder is None:
            return
        stored = self.current()
        if stored is None or stored.token != self.holder.token:
            _LOG.error("The lease of %s is no longer this job's (now %s)", self.out.uri, stored)
            return
        self.holder = Holder(**{**asdict(self.holder), "renewed": time.time()})
        self.out.fs.pipe_file(self.path, json.dumps(asdict(self.holder), sort_keys=True).encode())

    def release(self) -> None:
        """Removes the lease if it is still ours."""
        if self.holder is None:
            return
        try:
            stored = self.current()
            if stored is not None and stored.token == self.holder.token:
                self.out.fs.rm(self.path)
        finally:  # even when the file cannot be removed, this process no longer holds it
            with _HELD_LOCK:
                _HELD_HERE.discard(self.holder.token)
            self.holder = None

    def _loop(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self.renew()
            except Exception as e:  # a missed renewal only brings staleness closer; never break the run
                _LOG.warning("Renewing the lease of %s failed: %s", self.out.uri, e)

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(target=self._loop, name="yamnet-beam-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.release()
