"""A local filesystem that fails, or dies, at the N-th ``mv``/``write``/``rm``: crash safety by fault injection.

``faulty:///abs/path`` is the local path ``/abs/path`` seen through :class:`FaultyFileSystem`. Every
operation that changes the disk is logged (``FaultyFileSystem.log``) in order, and a :class:`Fault`
planted on one of them either raises ``OSError`` there (``fail``: the process lives on and may clean
up) or *kills* (``kill``: that operation and every later one through the filesystem raise
:class:`Killed` before touching the disk, so nothing the dying process still does reaches it: no
``abort()``, no cleanup, like a SIGKILL at that instant).

Use it through :func:`faulty_filesystem`, which registers the protocol and removes it again.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "faulty"
OPS = ("makedirs", "open", "write", "mv", "rm", "pipe")


class Killed(RuntimeError):
    """The process 'died' at a planted fault: raised by that operation and by every later one."""


@dataclass
class Fault:
    """Fails or kills at the ``n``-th (1-based) ``op`` whose path (destination for ``mv``) matches ``match``."""

    op: str
    n: int = 1
    match: str = "*"
    action: str = "kill"  # or "fail"

    def __post_init__(self):
        if self.op not in OPS or self.action not in ("kill", "fail") or self.n < 1:
            raise ValueError(f"bad fault {self}")


class _State:
    fault: Fault | None = None
    seen = 0
    dead = False
    fired: tuple[str, str] | None = None
    log: list[tuple[str, str]] = []
    after_mv: Callable[[str, str], None] | None = None


class FaultyFileSystem(LocalFileSystem):
    """The local disk behind ``faulty://``, with one planted :class:`Fault` and a log of what changed."""

    protocol = PROTOCOL
    cachable = False  # every instance sees the one class-level plan
    state = _State

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, str) and path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return LocalFileSystem._strip_protocol(path)

    def unstrip_protocol(self, name):
        return f"{PROTOCOL}://{self._strip_protocol(name)}"

    # -- the fault ------------------------------------------------------------------------------------

    @classmethod
    def _op(cls, op: str, path: str) -> None:
        """Called before ``op`` changes the disk: logs it, or raises if the process is dead or the fault is here."""
        s = cls.state
        if s.dead:
            raise Killed(f"dead since {s.fired}: {op} {path} never happened")
        f = s.fault
        if f is not None and s.fired is None and op == f.op and fnmatch.fnmatch(path, f.match):
            s.seen += 1
            if s.seen == f.n:
                s.fired = (op, path)
                if f.action == "kill":
                    s.dead = True
                    raise Killed(f"killed at {op} #{f.n} ({path})")
                raise OSError(f"injected failure at {op} #{f.n} ({path})")
        s.log.append((op, path))

    def makedirs(self, path, exist_ok=False):
        self._op("makedirs", self._strip_protocol(path))
        return super().makedirs(path, exist_ok=exist_ok)

    def mkdir(self, path, create_parents=True, **kwargs):
        self._op("makedirs", self._strip_protocol(path))
        return super().mkdir(path, create_parents=create_parents, **kwargs)

    def mv(self, path1, path2, recursive: bool = True, **kwargs):
        dest = self._strip_protocol(path2)
        self._op("mv", dest)
        result = super().mv(path1, path2, recursive=recursive, **kwargs)
        if self.state.after_mv is not None:
            self.state.after_mv(self._strip_protocol(path1), dest)
        return result

    def rm(self, path, recursive=False, maxdepth=None):
        for p in [path] if isinstance(path, str) else path:
            self._op("rm", self._strip_protocol(p))
        return super().rm(path, recursive=recursive, maxdepth=maxdepth)

    def rm_file(self, path):
        self._op("rm", self._strip_protocol(path))
        return super().rm_file(path)

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        self._op("pipe", self._strip_protocol(path))
        return super().pipe_file(path, value, mode=mode, **kwargs)

    def _open(self, path, mode="rb", block_size=None, **kwargs):
        stripped = self._strip_protocol(path)
        if "r" in mode and "+" not in mode:
            return super()._open(path, mode, block_size=block_size, **kwargs)
        self._op("open", stripped)
        f = super()._open(path, mode, block_size=block_size, **kwargs)
        write = f.write

        def faulty_write(data, _write=write, _path=stripped):
            FaultyFileSystem._op("write", _path)
            return _write(data)

        f.write = faulty_write
        return f


@contextlib.contextmanager
def faulty_filesystem(
    fault: Fault | None = None, after_mv: Callable[[str, str], None] | None = None
) -> Iterator[type[_State]]:
    """Registers ``faulty://`` with ``fault`` planted; yields the state (``log``, ``fired``, ``dead``); unregisters."""
    s = FaultyFileSystem.state
    s.fault, s.seen, s.dead, s.fired, s.log, s.after_mv = fault, 0, False, None, [], after_mv
    fsspec.register_implementation(PROTOCOL, FaultyFileSystem, clobber=True)
    try:
        yield s
    finally:
        s.fault, s.dead, s.after_mv = None, False, None
        sys.modules["fsspec.registry"]._registry.pop(PROTOCOL, None)  # fsspec.registry is a read-only view
        FaultyFileSystem.clear_instance_cache()


def url(path) -> str:
    """``faulty://`` URL of a local path."""
    return f"{PROTOCOL}://{path}"
