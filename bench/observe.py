"""What the scale benchmark watches while real worker processes run: their task events (every finished
task with its worker's timestamp, pid and parsed result), the Kubernetes requests over time (the
stand-in's counters, polled), and a ticker that sends ``fan_out`` every interval as beat would.

Where it stands: beside the fleet, used by ``bench.scale``.
"""

from __future__ import annotations

import ast
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

RECONCILE = "gco_tasks.reconcile_endpoint"
RECONCILE_BATCH = "gco_tasks.reconcile_endpoints"  # finished: one ``RECONCILE`` per endpoint it names
RECONCILE_MESSAGES = (RECONCILE, RECONCILE_BATCH)
FAN_OUT = "gco_tasks.fan_out"
K8S_WRITES = ("apply", "create", "update", "patch", "delete")


@dataclass(frozen=True)
class Finished:
    """One task that ended in a worker."""

    name: str
    at: float  # the worker's clock (same machine)
    pid: int  # the worker's main process (events do not name the pool process)
    runtime: float
    failed: bool
    result: dict[str, Any] | None


def _parse(text: Any) -> Any:
    """A task's result from its event: a mapping (a batch's: a list of them), else None."""
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, dict | list) else None


class EventReceiver:
    """The workers' events, received over the broker in a thread (Celery's event receiver); a subclass
    says what it keeps of each (``_on``, called under ``cond``)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cond = threading.Condition()
        self.online = False
        self.error: BaseException | None = None
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._run, name="bench-events", daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.app.connection_for_read() as connection:
                self.receiver = self.app.events.Receiver(connection, handlers={"*": self._on_event})
                self.receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as exc:  # pragma: no cover - reported by wait()
            self.error = exc
            with self.cond:
                self.cond.notify_all()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        with self.cond:
            if kind in ("worker-online", "worker-heartbeat"):
                self.online = True
            else:
                self._on(kind, event)
            self.cond.notify_all()

    def _on(self, kind: str, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=5)


class Events(EventReceiver):
    """Every finished task with its worker's timestamp, pid and parsed result, and the tasks in flight."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.names: dict[str, str] = {}
        self.finished: list[Finished] = []
        self.running: set[str] = set()  # received by a worker, not finished yet
        self.sent: list[str] = []  # the name of every task a worker sent (task-sent), in order
        self.revoked: list[tuple[int, str]] = []  # (len(sent) then, name) of every task revoked unrun

    def _on(self, kind: str, event: dict[str, Any]) -> None:
        if kind in ("task-received", "task-sent") and event.get("name"):
            self.names[event["uuid"]] = event["name"]
            if kind == "task-received":
                self.running.add(event["uuid"])
            else:
                self.sent.append(event["name"])
        elif kind in ("task-succeeded", "task-failed", "task-revoked"):
            self.running.discard(event["uuid"])
        if kind == "task-revoked":  # an expired message is revoked by the worker that received it
            self.revoked.append((len(self.sent), self.names.get(event["uuid"], "")))
        if kind in ("task-succeeded", "task-failed"):
            name = self.names.get(event["uuid"], "")
            result = _parse(event.get("result")) if kind == "task-succeeded" else None
            at, pid = float(event.get("timestamp") or time.time()), int(event.get("pid") or 0)
            runtime, failed = float(event.get("runtime") or 0.0), kind == "task-failed"
            if isinstance(result, list):  # a batch's: one per endpoint, the batch's runtime shared out
                share = runtime / max(1, len(result))
                self.finished.extend(
                    Finished(RECONCILE, at, pid, share, failed, one)
                    for one in result
                    if isinstance(one, dict)
                )
            else:
                self.finished.append(Finished(name, at, pid, runtime, failed, result))

    def in_flight(self) -> int:
        """Tasks a worker has received and not finished (a long fan-out finishes nothing for a while)."""
        with self.cond:
            return len(self.running)

    def mark(self) -> int:
        with self.cond:
            return len(self.finished)

    def sent_mark(self) -> int:
        with self.cond:
            return len(self.sent)

    def sent_since(self, mark: int) -> Counter[str]:
        """Tasks sent by workers (a fan-out's reconciles, a requeue) since ``sent_mark``, by name."""
        with self.cond:
            return Counter(self.sent[mark:])

    def messages_since(self, mark: int) -> int:
        """Reconcile messages sent by workers since ``sent_mark`` (lone or batched)."""
        sent = self.sent_since(mark)
        return sum(sent.get(name, 0) for name in RECONCILE_MESSAGES)

    def revoked_since(self, mark: int) -> Counter[str]:
        """Tasks revoked unrun (expired in the queue) since ``sent_mark``, by name."""
        with self.cond:
            return Counter(name for at, name in self.revoked if at >= mark)

    def since(self, index: int, name: str | None = None) -> list[Finished]:
        with self.cond:
            return [f for f in self.finished[index:] if name is None or f.name == name]

    def wait(self, predicate: Callable[[], bool], timeout: float, poll: float = 1.0) -> bool:
        """Wait until ``predicate()`` (called under the lock, so keep it cheap) or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                if self.error is not None:
                    raise RuntimeError(f"event receiver failed: {self.error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, poll))
        return True


class RequestPoller:
    """The stand-in's request counters every ``period`` seconds: (time, writes so far, lists so far)."""

    def __init__(self, read: Callable[[], dict[str, int]], period: float = 0.25) -> None:
        self.read, self.period = read, period
        self.samples: list[tuple[float, int, int]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)

    def start(self) -> RequestPoller:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stopped.is_set():
            stats = self.read()
            writes = sum(n for key, n in stats.items() if key.split()[0] in K8S_WRITES)
            lists = sum(n for key, n in stats.items() if key.split()[0] == "list")
            self.samples.append((time.time(), writes, lists))
            self.stopped.wait(self.period)

    def stop(self) -> list[tuple[float, int, int]]:
        self.stopped.set()
        self.thread.join(timeout=5)
        return self.samples


def write_rates(samples: list[tuple[float, int, int]], window: float) -> dict[str, float]:
    """Kubernetes writes per second: the peak over any span of at least ``window`` seconds, and the mean
    from the sample before the first write to the first sample showing the last one."""
    points = [(t, w) for t, w, _ in samples]
    if len(points) < 2 or points[-1][1] == points[0][1]:
        return {"peak": 0.0, "mean": 0.0, "writes": 0, "seconds": 0.0}
    first = max(i for i in range(len(points)) if points[i][1] == points[0][1])
    last = min(i for i in range(len(points)) if points[i][1] == points[-1][1])
    span = max(points[last][0] - points[first][0], 1e-9)
    total = points[-1][1] - points[0][1]
    peak, j = total / span, first
    for i in range(first, last):
        while j < last and points[j][0] - points[i][0] < window:
            j += 1
        if points[j][0] - points[i][0] >= window:
            peak = max(peak, (points[j][1] - points[i][1]) / (points[j][0] - points[i][0]))
    return {
        "peak": round(peak, 1),
        "mean": round(total / span, 1),
        "writes": total,
        "seconds": round(span, 1),
    }


class Ticker:
    """Sends ``fan_out`` every ``interval`` seconds (expiring after one interval), as beat would."""

    def __init__(self, send: Callable[[float], None], interval: float) -> None:
        self.send, self.interval = send, interval
        self.sent: list[float] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-ticker", daemon=True)

    def start(self) -> Ticker:
        self.thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self.stopped.is_set():
            self.sent.append(time.time())
            self.send(self.interval)
            next_at += self.interval
            self.stopped.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
