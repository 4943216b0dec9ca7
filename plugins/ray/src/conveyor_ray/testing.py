"""A local Ray cluster for tests and benchmarks: `ray_head()` starts `ray start --head` on
127.0.0.1 and stops exactly the processes it started.

The cluster requires a token of its own (Ray's token authentication, `RAY_AUTH_MODE=token`):
Ray 2.5x turns token authentication on for a new cluster whenever `~/.ray/auth_token` exists
(a `ray.init()` of a local Ray writes one), and a driver without the cluster's token is then
refused; with its own token the cluster works whatever that file holds. `RayHead.env` is what
a driver needs: the address and the token (a secret: pass it, never print it).

`ray stop` would stop every Ray cluster of the user on the machine (another test session's,
say), so the cluster is stopped by process id instead: the processes whose command line names
its own temporary folder (every Ray process of a node carries it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 120.0


@dataclass(frozen=True)
class RayHead:
    """A running local cluster: its `address` (HOST:PORT, for RAY_ADDRESS or ray.address) and
    its temporary folder."""

    address: str
    temp_dir: Path
    num_cpus: int
    token: str = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a driver of this cluster (`conveyor run`, a sweep)."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": self.token}


@contextlib.contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[RayHead]:
    """Start a Ray head on 127.0.0.1 (a free port, `num_cpus` CPUs, no dashboard, no usage
    stats) for the duration of the block; its processes are stopped afterwards, also when the
    block fails."""
    from conveyor.testing import free_port

    # A short path: Ray's unix sockets live under it, and their paths are limited to 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="cr", dir="/tmp"))
    port = free_port()
    ray = str(Path(sys.executable).parent / "ray")
    # Every port Ray would otherwise take at a fixed number (the client server's 10001, the
    # agents' 52365...) is a free one: two clusters on one machine (xdist workers) must not meet.
    ports = {name: free_port() for name in (
        "ray-client-server-port", "dashboard-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")}
    command = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
               f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp_dir}", *(f"--{name}={value}" for name, value in ports.items())]
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    try:
        started = subprocess.run(command, capture_output=True, text=True, env=env,
                                 timeout=START_TIMEOUT)
        if started.returncode != 0:
            raise RuntimeError(f"`ray start --head` failed ({started.returncode}):\n"
                               f"{started.stdout}\n{started.stderr}")
        yield RayHead(f"127.0.0.1:{port}", temp_dir, num_cpus, token)
    finally:
        stop_processes_under(temp_dir, port)
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_processes_under(temp_dir: Path, port: int, timeout: float = 15.0) -> list[int]:
    """Stop (SIGTERM, then SIGKILL) the cluster's processes: this user's processes whose
    command line names `temp_dir` or the head's `port` (the client server names only that),
    and their children (the agents, renamed `ray::...`); returns their ids."""
    marks = (str(temp_dir), f":{port} ")
    pids = _own_pids()
    found = {pid for pid in pids if any(m in _cmdline(pid) + " " for m in marks)}
    parents = {pid: _parent(pid) for pid in pids}
    grown = True
    while grown:  # descendants of what was found
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grown = bool(more)
    found = sorted(found)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in found):
        time.sleep(0.1)
    for pid in found:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return found


def _own_pids() -> list[int]:
    uid = os.getuid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
