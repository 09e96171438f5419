"""Live progress of a run, fed by the client's ``on_event`` listener.

On a terminal a :class:`rich.live.Live` display on stderr shows a bar, the
done / running / failed counts, the rate, the ETA and the names of the
running tasks, and ends with a one-line summary. Elsewhere (pipes, CI) there
is no live display: at most one plain progress line every
:data:`PLAIN_INTERVAL` seconds, so that short runs print nothing extra.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final, TextIO

from gleitzeit.core._events import EventKind

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType

    from rich.console import Console, RenderableType
    from rich.live import Live

    from gleitzeit.core._events import Event

__all__ = ["PLAIN_INTERVAL", "RunProgress", "stderr_is_terminal"]

#: Seconds between plain progress lines when stderr is not a terminal.
PLAIN_INTERVAL: Final = 10.0
#: Least seconds between two redraws caused by events.
_REDRAW: Final = 0.1
#: Names of running tasks shown at once.
_SHOWN: Final = 5


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (not a pipe, file or dumb terminal)."""
    console = _console()
    return console.is_terminal and not console.is_dumb_terminal


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class RunProgress:
    """Counts of one workflow run, updated from its events; a context manager.

    Call the instance with each batch of events (pass it as ``on_event``). It
    runs in the client's event-loop thread, so it only updates counters and,
    at most every 0.1 s, redraws; the terminal display also redraws itself
    four times a second so that the elapsed time and ETA move.

    Args:
        live: Show a live display (a terminal); False prints plain lines.
        stream: Where plain lines go (default: stderr).
    """

    def __init__(self, *, live: bool, stream: TextIO | None = None) -> None:
        self.live = live
        self.stream = stream
        self.name = ""
        self.total = 0
        #: Tasks already completed before this run started (a resumed run).
        self.done_before = 0
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.cancelled = 0
        self.retries = 0
        self.status: str | None = None
        self.running: dict[str, float] = {}
        self.names: dict[str, str] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._last_plain = self.started
        self._live: Live | None = None

    def __repr__(self) -> str:
        return (
            f"<RunProgress {self.name!r} {self.finished}/{self.total} "
            f"running={len(self.running)} failed={self.failed}>"
        )

    # --- state --------------------------------------------------------------

    def expect(self, workflow: Any) -> None:
        """Take the workflow's name, tasks and counts before it runs (a resume)."""
        with self._lock:
            self.name = workflow.name
            self.total = workflow.total_tasks
            self.names = {t.id: t.name for t in workflow.tasks}
            self.done_before = sum(1 for t in workflow.tasks if str(t.status) == "completed")

    @property
    def finished(self) -> int:
        """Tasks that reached an end: completed (now or before), failed, skipped, cancelled."""
        return self.done_before + self.completed + self.failed + self.skipped + self.cancelled

    def rate(self) -> float | None:
        """Tasks finished per second in this run so far (None before the first)."""
        ended = self.completed + self.failed
        elapsed = time.monotonic() - self.started
        return ended / elapsed if ended and elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the current rate (None while unknown)."""
        rate = self.rate()
        if rate is None or not self.total:
            return None
        return max(0, self.total - self.finished) / rate

    def __call__(self, events: Sequence[Event]) -> None:
        with self._lock:
            for event in events:
                self._apply(event)
        now = time.monotonic()
        if self._live is not None:
            if now - self._last_draw >= _REDRAW:
                self._last_draw = now
                self._live.refresh()
        elif now - self._last_plain >= PLAIN_INTERVAL:
            self._last_plain = now
            self._print(self.plain_line())

    def _apply(self, event: Event) -> None:
        kind = event.kind
        tid = event.task_id
        if kind is EventKind.TASK_STARTED:
            assert tid is not None
            self.running[tid] = event.at
        elif kind is EventKind.TASK_COMPLETED:
            self.running.pop(tid or "", None)
            self.completed += 1
        elif kind is EventKind.TASK_FAILED:
            self.running.pop(tid or "", None)
            if event.status == "retrying":
                self.retries += 1
            else:
                self.failed += 1
        elif kind is EventKind.TASK_SKIPPED:
            self.skipped += 1
        elif kind is EventKind.TASK_CANCELLED:
            self.running.pop(tid or "", None)
            self.cancelled += 1
        elif kind is EventKind.WORKFLOW_SUBMITTED:
            workflow = event.workflow
            assert workflow is not None
            self.name = workflow.name
            self.total = workflow.total_tasks
            self.names = {t.id: t.name for t in workflow.tasks}
        elif kind is EventKind.WORKFLOW_STARTED:
            self.started = time.monotonic()
        elif kind is EventKind.WORKFLOW_FINISHED:
            self.status = event.status

    # --- output -------------------------------------------------------------

    def _running_names(self) -> Iterator[str]:
        for i, tid in enumerate(self.running):
            if i == _SHOWN:
                yield f"and {len(self.running) - _SHOWN} more"
                return
            yield self.names.get(tid, tid)

    def counts_text(self) -> str:
        """``done 3/10  running 2  failed 0  skipped 0  rate 1.5/s  ETA 4.7s``."""
        rate = self.rate()
        eta = self.eta()
        parts = [
            f"done {self.done_before + self.completed}/{self.total}",
            f"running {len(self.running)}",
            f"failed {self.failed}",
        ]
        if self.skipped:
            parts.append(f"skipped {self.skipped}")
        if self.cancelled:
            parts.append(f"cancelled {self.cancelled}")
        if self.retries:
            parts.append(f"retries {self.retries}")
        parts.append(f"rate {rate:.1f}/s" if rate is not None else "rate -")
        parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA -")
        parts.append(f"elapsed {_duration(time.monotonic() - self.started)}")
        return "  ".join(parts)

    def plain_line(self) -> str:
        """One line for logs: the workflow's name and :meth:`counts_text`."""
        with self._lock:
            return f"progress: {self.name}: {self.counts_text()}"

    def summary(self) -> str:
        """The closing line: how the run ended, its counts and how long it took."""
        with self._lock:
            elapsed = _duration(time.monotonic() - self.started)
            ok = self.status == "completed"
            counts = f"{self.done_before + self.completed}/{self.total} completed"
            for label in ("failed", "skipped", "cancelled"):
                value = getattr(self, label)
                if value:
                    counts += f", {value} {label}"
            if self.retries:
                counts += f", {self.retries} retries"
            mark = "✓" if ok else "✗"
            return f"{mark} {self.name}: {self.status or 'interrupted'}: {counts} in {elapsed}"

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            bar = Table.grid(padding=(0, 1))
            bar.add_column(no_wrap=True)
            bar.add_column(no_wrap=True)
            bar.add_row(
                ProgressBar(total=max(self.total, 1), completed=self.finished, width=40),
                Text(f"{self.finished}/{self.total} {self.name}", style="bold"),
            )
            lines: list[RenderableType] = [bar, Text(self.counts_text())]
            names = list(self._running_names())
            if names:
                lines.append(Text("running: " + ", ".join(names), style="cyan", no_wrap=True))
        return Group(*lines)

    def _print(self, line: str) -> None:
        stream = self.stream or sys.stderr
        print(line, file=stream, flush=True)

    # --- lifecycle ----------------------------------------------------------

    def __enter__(self) -> RunProgress:
        self.started = time.monotonic()
        self._last_plain = self.started
        if self.live:
            from rich.live import Live

            self._live = Live(
                self,
                console=_console(),
                refresh_per_second=4,
                transient=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()
            if exc_type is None or self.status is not None:
                _console().print(self.summary(), highlight=False)
