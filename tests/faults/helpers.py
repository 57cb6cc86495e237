"""Fault-test helpers: a client that keeps posting through faults (retrying each batch until it is
acknowledged, as the SDK does) and exact accounting of what was acknowledged against what is stored."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

from tests.stack.query_helpers import get_json, post_json

__all__ = ["RetryingPoster", "assert_exactly_once", "stored_ids", "wait_until"]

#: Seconds between retries of a batch the stack did not acknowledge (503 while NATS is down, 429, timeouts).
RETRY_WAIT = 0.2


class RetryingPoster(threading.Thread):
    """Posts NDJSON batches of `batch` entries with unique ids to `base`/logs until `stop` is set. A batch
    not answered 202 is re-sent with the same batch id and entry ids until it is (or the poster stops).
    `accepted` lists the ids of acknowledged entries; `statuses` counts every answer (0: no answer)."""

    def __init__(self, base: str, service: str, *, batch: int = 20, pause: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.base, self.service, self.batch, self.pause = base, service, batch, pause
        self.accepted: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.stop = threading.Event()
        self._sent = 0

    def accepted_now(self) -> int:
        return len(self.accepted)

    def run(self) -> None:
        while not self.stop.is_set():
            ids = [f"{self.service}-{self._sent + i}" for i in range(self.batch)]
            self._sent += self.batch
            body = "\n".join(
                json.dumps({"id": i, "level": "info", "message": f"entry {i}", "service": self.service})
                for i in ids
            ).encode()
            headers = {"X-Oglog-Batch-Id": uuid.uuid4().hex}
            while not self.stop.is_set():
                try:
                    status = post_json(f"{self.base}/logs", body, timeout=5, headers=headers)
                except OSError:
                    status = 0
                self.statuses[status] += 1
                if status == 202:
                    self.accepted.extend(ids)
                    break
                assert status in (0, 429, 503), f"unexpected answer {status}"
                self.stop.wait(RETRY_WAIT)
            self.stop.wait(self.pause)

    def finish(self, timeout: float = 30.0) -> list[str]:
        """Stop after the batch in hand is settled; the acknowledged ids."""
        self.stop.set()
        self.join(timeout)
        assert not self.is_alive(), "poster did not stop"
        return self.accepted


def wait_until(probe: Any, *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `probe()` until it returns something truthy (returned); AssertionError naming `what` past
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    stop = threading.Event()
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        stop.wait(interval)


def stored_ids(base: str, service: str) -> list[str]:
    """Every stored id of `service` (with repeats, if any), walking /api/logs with its cursor."""
    ids: list[str] = []
    url = f"{base}/api/logs?service={service}&limit=1000"
    while url:
        status, body, headers = get_json(url)
        assert status == 200, body
        ids += [e["id"] for e in body]
        cursor = headers.get("X-Next-Cursor")
        url = f"{base}/api/logs?service={service}&limit=1000&cursor={cursor}" if cursor else ""
    return ids


def _total(base: str, service: str) -> int:
    try:
        status, body, _ = get_json(f"{base}/api/stats?service={service}", timeout=5)
    except OSError:
        return -1
    return int(body["total_logs"]) if status == 200 else -1


def assert_exactly_once(base: str, service: str, accepted: list[str], *, timeout: float = 30.0) -> None:
    """Every acknowledged id is stored, none twice, nothing else stored for `service`."""
    assert len(accepted) == len(set(accepted))
    wait_until(lambda: _total(base, service) >= len(accepted), timeout=timeout, what="all accepted stored")
    ids = stored_ids(base, service)
    doubled = [i for i, n in Counter(ids).items() if n > 1]
    assert not doubled, f"{len(doubled)} entries stored twice, e.g. {doubled[:3]}"
    missing = set(accepted) - set(ids)
    assert not missing, f"{len(missing)} acknowledged entries lost, e.g. {sorted(missing)[:3]}"
    # Retried batches that were never acknowledged may still have been stored once: never more than sent.
    assert len(ids) >= len(accepted)
