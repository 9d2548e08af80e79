"""Where ``daskgen.print`` lines land on the caller's console: between its lines.

A task's ``daskgen.print`` reaches the caller as an event, handled on the
client's event-loop thread while the caller's own threads may be printing. The
built-in ``print("a", b)`` writes ``"a"``, ``" "``, ``str(b)`` and ``"\\n"`` one
by one, so a line written from another thread can land in the middle of it.

:func:`emit` therefore writes through a :class:`LineGuard` that it puts in
front of ``sys.stdout`` (or ``sys.stderr``): the guard (put there when a client is set up for daskgen) passes every write through unchanged, notes whether the last one ended a
line, and holds daskgen's lines until it did. A line the caller leaves open
for longer than :data:`STALE` seconds (``print("working...", end="")``) does
not hold them for ever: they are written on a new line then.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
from typing import Any

__all__ = ["STALE", "LineGuard", "emit", "install"]

#: Seconds daskgen's lines wait for the caller to end a line it started.
STALE = 1.0


class LineGuard:
    """A text stream that writes other threads' whole lines only between its lines.

    Every attribute but ``write``/``writelines`` is the wrapped stream's.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.RLock()
        self._at_line_start = True
        self._pending: list[str] = []
        self._timer: threading.Timer | None = None

    @property
    def wrapped(self) -> Any:
        return self._stream

    def write(self, s: str) -> int:
        with self._lock:
            n = self._stream.write(s)
            if s:
                self._at_line_start = s.endswith(("\n", "\r"))
                if self._at_line_start and self._pending:
                    self._write_pending()
            return n

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def emit(self, text: str) -> None:
        """Write ``text`` (whole lines) now if the stream is between lines, else
        as soon as the line being written ends (or after :data:`STALE` s)."""
        with self._lock:
            self._pending.append(text)
            if self._at_line_start:
                self._write_pending()
            elif self._timer is None:
                self._timer = threading.Timer(STALE, self.flush_stale)
                self._timer.daemon = True
                self._timer.start()

    def flush_stale(self) -> None:
        """Write held lines on a new line, ending the line the caller left open."""
        with self._lock:
            self._timer = None
            if self._pending:
                if not self._at_line_start:
                    self._stream.write("\n")
                self._write_pending()

    def _write_pending(self) -> None:
        text, self._pending = "".join(self._pending), []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stream.write(text)
        self._at_line_start = True
        with contextlib.suppress(OSError, ValueError):  # a closed stream
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_install_lock = threading.Lock()


def _guard(name: str) -> LineGuard | None:
    with _install_lock:
        stream = getattr(sys, name)
        if stream is None:
            return None
        if not isinstance(stream, LineGuard):
            stream = LineGuard(stream)
            setattr(sys, name, stream)
        return stream


def install() -> None:
    """Put a :class:`LineGuard` in front of ``sys.stdout`` and ``sys.stderr``.

    Done when a client is set up for daskgen, so the guard has seen the
    caller's writes before the first line arrives; :func:`emit` does it again
    if something replaced the streams since.
    """
    _guard("stdout")
    _guard("stderr")


def emit(text: str, *, stderr: bool = False) -> None:
    """Write ``text``, whole lines, to ``sys.stdout`` (or ``sys.stderr``) between
    the lines the process writes there itself."""
    guard = _guard("stderr" if stderr else "stdout")
    if guard is not None:
        guard.emit(text)


@atexit.register
def _flush_at_exit() -> None:  # pragma: no cover - exercised at interpreter exit
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if isinstance(stream, LineGuard):
            stream.flush_stale()
