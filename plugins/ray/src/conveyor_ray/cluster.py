"""Connecting this process to the Ray cluster of `ray.address`, once per process.

A wrong address is the user's input: it fails with exit 2 (`ConfigError`) naming `ray.address`
and where it came from, within seconds (a TCP check before Ray's own connection, which would
retry for a minute), never with Ray's traceback.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket

from conveyor import ConfigError

from conveyor_ray.config import AUTO, LOCAL, resolved_address

CONNECT_TIMEOUT = 5.0  # seconds the TCP check of HOST:PORT waits

_connected: str | None = None  # the address this process's Ray is connected to


def keep_repeated_lines() -> None:
    """Jobs print lines that differ only in their numbers; Ray would fold them into
    "[repeated 2x across cluster]". Each matters here. Ray reads the setting when it is first
    imported, so this runs just before a command's first use of Ray (never at plugin import:
    a command that does not use Ray leaves the environment as it found it)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def connect(address: str, *, origin: str) -> str:
    """Connect to (or, for `local`, start) the cluster; returns the address connected to.
    Within a Ray task or actor (a sweep job on Ray) the worker's own connection is used."""
    global _connected
    keep_repeated_lines()
    import ray

    if ray.is_initialized():
        return _connected or "(this worker's cluster)"
    target = resolved_address(address)
    setting = f"ray.address={address!r} (from {origin})"
    if target.lower() == AUTO:
        # Ray's own discovery: the cluster `ray start` runs on this machine, if any.
        init_address = AUTO
    elif target.lower() == LOCAL:
        init_address = None
    else:
        check_reachable(target, setting)
        init_address = target
    quiet = io.StringIO()
    try:
        # Ray prints its connection banner and warnings; the stage's own lines are what count.
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            ray.init(address=init_address, log_to_driver=False, logging_level=logging.ERROR,
                     include_dashboard=False if init_address is None else None,
                     configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        found = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if init_address == AUTO:
            raise ConfigError(
                f"{setting}: RAY_ADDRESS is not set and no Ray cluster runs on this machine",
                hint="start one (`ray start --head`), set RAY_ADDRESS, set ray.address to a "
                     "cluster's HOST:PORT, or ray.address=local for a Ray inside the command"
            ) from None
        raise ConfigError(f"{setting}: cannot connect to the Ray cluster at {target}: {found}",
                          hint="check the address `ray start --head` printed") from None
    _connected = target if init_address is not None else LOCAL
    return _connected


def check_reachable(target: str, setting: str) -> None:
    """A cluster answers at `target` (HOST:PORT or ray://HOST:PORT) within `CONNECT_TIMEOUT`;
    otherwise a `ConfigError` naming `setting` (the setting and where it came from)."""
    host, port = _host_port(target, setting)
    _check_reachable(host, port, target, setting)


def _host_port(target: str, setting: str) -> tuple[str, int]:
    bare = target.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{setting}: not an address of a Ray cluster",
                          hint="use auto, local, HOST:PORT or ray://HOST:PORT")
    return host, int(port)


def _check_reachable(host: str, port: int, target: str, setting: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ConfigError(f"{setting}: nothing answers at {target} ({exc.strerror or exc})",
                          hint="is the cluster running? `ray status --address HOST:PORT` "
                               "tells") from None
