"""`oglog stack up` as a user runs it, for the benchmarks: a subprocess with its own data dir and port, its
processes by role, their CPU and resident memory (read from /proc), and the whole machine's busy time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from oglogstream.stack.broker.natsd import free_port

START_TIMEOUT = 90.0
RSS_INTERVAL = 0.2


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _role(pid: int) -> str:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    if b"nats-server" in cmdline:
        return "nats-server"
    return "ingest worker" if b"oglogstream.stack.server.workers" in cmdline else "other"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes, ours and others)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Stack:
    """`oglog stack up [--ingest-workers N]` in a subprocess with its own data dir and port."""

    def __init__(self, workdir: Path, workers: int | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["stack", "up", "--data-dir", str(workdir / "data"), "--port", str(self.port)]
        if workers is not None:
            args += ["--ingest-workers", str(workers)]
        self.log = open(workdir / "stack.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oglogstream.stack.server.cli", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.peak: dict[int, float] = {}
        self._sampling = threading.Event()
        deadline = time.monotonic() + START_TIMEOUT
        # The banner comes after every worker listens; /health answers as soon as the first one does.
        while not (self._healthy() and b"Press Ctrl-C" in (workdir / "stack.log").read_bytes()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"stack did not start: {(workdir / 'stack.log').read_text()}")
            time.sleep(0.2)
        self._sampling.wait(1.0)  # settle: the idle figure is after start, not during imports

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def roles(self) -> dict[int, str]:
        """pid -> role of every process of the stack (the supervisor runs processing + query)."""
        roles = {self.proc.pid: "supervisor (process+query)"}
        roles.update({pid: _role(pid) for pid in _children(self.proc.pid)})
        return {pid: role for pid, role in roles.items() if role != "other"}

    def cpu(self) -> dict[int, float]:
        return {pid: _cpu_seconds(pid) for pid in self.roles()}

    def rss(self) -> dict[int, float]:
        return {pid: _rss_mb(pid) for pid in self.roles()}

    @contextmanager
    def sampling_peak(self) -> Iterator[None]:
        """Record each process's peak RSS while the block runs."""
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(RSS_INTERVAL):
                for pid, mb in self.rss().items():
                    self.peak[pid] = max(self.peak.get(pid, 0.0), mb)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)

    def stored(self) -> int:
        with urllib.request.urlopen(f"{self.url}/api/stats", timeout=10) as resp:
            return int(json.loads(resp.read())["total_logs"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def memory_summary(stack: Stack, idle: dict[int, float]) -> str:
    """Each process of `stack` (by role): resident MB when idle (`idle`) -> its peak while sampled."""
    roles = stack.roles()
    return "; ".join(
        f"{roles.get(pid, '?')} {mb:.0f} -> {stack.peak.get(pid, mb):.0f} MB"
        for pid, mb in sorted(idle.items())
    )
