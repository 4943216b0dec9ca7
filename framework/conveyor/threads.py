"""Native thread pools (OpenMP, OpenBLAS, MKL) sized to the cores actually free.

A model fit such as scikit-learn's HistGradientBoosting starts one OpenMP thread per core and
meets them at a barrier many times a second. When another process keeps a core busy, the
thread sharing that core is descheduled while the others spin at the barrier waiting for it:
a 0.6 s fit then takes minutes. So each stage runs with its pools limited (threadpoolctl) to

    free = min(cores we may use, cgroup CPU quota) - cores other processes keep busy, at least 1

where the busy cores are measured from /proc/stat over the time since the previous measurement
(at least `MIN_WINDOW` seconds), minus this process's own CPU time over the same window.

`runner.threads` (every stage) and `pipeline.<stage>.threads` (one stage) are `auto` (the
default: the rule above) or a number of threads. Under `auto`, an `OMP_NUM_THREADS` the user
set caps the number (an explicit environment is the user's word, as for OpenMP itself); a
number in the config is used as given. The limit applies to the libraries loaded when the stage
starts; when no OpenMP runtime is loaded yet, `OMP_NUM_THREADS` is also set to the same number
while the stage runs (unless the user set it), for the one the stage loads itself (OpenMP and
OpenBLAS read it when they load).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError

AUTO = "auto"
MIN_WINDOW = 0.25  # seconds of /proc/stat counters a measurement prefers
SHORTEST_WINDOW = 0.1  # below this, the measurement waits for the counters to move
USER_ENV = "OMP_NUM_THREADS"


def parse_threads(value: Any, key: str) -> str | int | None:
    """A `threads` setting: AUTO, a whole number >= 1, or None (not set). ConfigError names
    `key` otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"{key} must be 'auto' or a whole number of threads (at least 1), "
                      f"not {value!r}",
                      hint="auto sizes native thread pools to the cores other processes "
                           "leave free")


@dataclass(frozen=True)
class _Counters:
    at: float  # time.monotonic()
    busy: int  # jiffies the CPUs we may use spent working (steal included: not ours either)
    total: int  # all their jiffies
    own: float  # this process's CPU seconds, all threads


@dataclass(frozen=True)
class Cores:
    """What a measurement found: the cores this process may use (affinity, cgroup quota) and
    how many of them other processes keep busy."""

    usable: int
    busy: int
    quota: float | None = None  # the cgroup CPU quota in cores, when one is set
    measured: bool = True  # False: /proc/stat could not be read, busy is 0 by assumption

    @property
    def free(self) -> int:
        return max(1, self.usable - self.busy)


class CoreMeter:
    """Counts free cores; `proc`, `cgroup`, `affinity`, `clock`, `own_cpu` and `sleep` are
    here for tests (a fake /proc and clock)."""

    def __init__(self, *, proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup"),
                 affinity: Callable[[], set[int]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 own_cpu: Callable[[], float] = time.process_time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.proc = proc
        self.cgroup = cgroup
        self._affinity = affinity or _affinity
        self._clock = clock
        self._own_cpu = own_cpu
        self._sleep = sleep
        self._samples: list[_Counters] = []

    def cpus(self) -> set[int]:
        return self._affinity()

    def quota(self) -> float | None:
        """The cgroup CPU quota in cores (v2 cpu.max, else v1 cfs quota), None when unlimited."""
        try:
            quota, period = [*(self.cgroup / "cpu.max").read_text().split(), "100000"][:2]
            if quota != "max":
                return int(quota) / int(period)
        except (OSError, ValueError):
            pass
        try:
            quota = int((self.cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((self.cgroup / "cpu" / "cpu.cfs_period_us").read_text())
            if quota > 0 and period > 0:
                return quota / period
        except (OSError, ValueError):
            pass
        return None

    def prime(self) -> None:
        """Start a measurement window now (the runner does when a run starts)."""
        sample = self._read()
        if sample is not None:
            self._samples.append(sample)

    def measure(self) -> Cores:
        cpus = self.cpus()
        quota = self.quota()
        usable = len(cpus) if quota is None else max(1, min(len(cpus), math.ceil(quota)))
        now = self._read(cpus)
        if now is None:
            return Cores(usable, 0, quota, measured=False)
        if not self._samples or now.at - self._samples[0].at < SHORTEST_WINDOW:
            # Too short a window: /proc/stat counts in 10 ms ticks. Wait for it to fill.
            if not self._samples:
                self._samples.append(now)
            self._sleep(SHORTEST_WINDOW - (now.at - self._samples[0].at))
            now = self._read(cpus) or now
        # The newest sample at least MIN_WINDOW old, else the oldest one there is.
        base = self._samples[0]
        for sample in self._samples:
            if now.at - sample.at >= MIN_WINDOW:
                base = sample
        self._samples = [s for s in self._samples if s.at >= base.at] + [now]
        busy = _busy_cores(base, now, len(cpus))
        return Cores(usable, min(usable, math.floor(busy + 0.5)), quota)

    def _read(self, cpus: set[int] | None = None) -> _Counters | None:
        cpus = self.cpus() if cpus is None else cpus
        own = self._own_cpu()
        try:
            text = (self.proc / "stat").read_text()
        except OSError:
            return None
        busy = total = 0
        for line in text.splitlines():
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            try:
                if int(name[3:]) not in cpus:
                    continue
                # user nice system idle iowait irq softirq steal (guest is inside user)
                values = [int(v) for v in fields[:8]]
            except ValueError:
                continue
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total += sum(values)
            busy += sum(values) - idle
        if total == 0:
            return None
        return _Counters(self._clock(), busy, total, own)


def _busy_cores(base: _Counters, now: _Counters, cpus: int) -> float:
    """Cores other processes kept busy between two samples: all work on our CPUs minus ours."""
    ticks = now.total - base.total
    if ticks <= 0 or cpus == 0:
        return 0.0
    all_work = (now.busy - base.busy) / ticks * cpus  # in cores
    elapsed = now.at - base.at
    own = (now.own - base.own) / elapsed if elapsed > 0 else 0.0
    return max(0.0, all_work - own)


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


_meter: CoreMeter | None = None


def meter() -> CoreMeter:
    """The process's meter: one measurement window runs on across runs (a sweep's jobs)."""
    global _meter
    if _meter is None:
        _meter = CoreMeter()
    return _meter


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    line: str  # for the stage's log: "threads: 1 of 2 cores (1 busy)"


def choose(stage_setting: str | int | None, run_setting: str | int | None, stage: str,
           measure: Callable[[], Cores] | None = None,
           environ: dict[str, str] | None = None) -> ThreadChoice:
    """The threads a stage gets: its own setting, else the run's, else auto."""
    environ = os.environ if environ is None else environ
    if isinstance(stage_setting, int):
        return ThreadChoice(stage_setting, f"threads: {stage_setting} "
                                           f"(pipeline.{stage}.threads)")
    if stage_setting is None and isinstance(run_setting, int):
        return ThreadChoice(run_setting, f"threads: {run_setting} (runner.threads)")
    cores = (measure or meter().measure)()
    threads = cores.free
    detail = f"{cores.busy} busy" if cores.measured else "load unknown"
    if cores.quota is not None:
        detail += f", cgroup quota {cores.quota:g}"
    cap = _user_cap(environ)
    if cap is not None and cap < threads:
        threads = cap
        detail += f", {USER_ENV}={cap}"
    return ThreadChoice(threads, f"threads: {threads} of {cores.usable} cores ({detail})")


def _user_cap(environ: dict[str, str] | Any) -> int | None:
    try:
        value = int(str(environ.get(USER_ENV, "")).split(",")[0])
    except ValueError:
        return None
    return value if value >= 1 else None


_controllers: list[tuple[int, Any]] = []


def _controller() -> Any | None:
    """threadpoolctl's view of the loaded libraries. Finding them costs 5-20 ms, so it is kept
    until Python imports something (native libraries come with extension modules). None
    before numpy is imported: the pools of Python's numeric libraries (OpenBLAS, OpenMP) come
    with it, and a project of light stages then never imports threadpoolctl (a library
    loaded later reads OMP_NUM_THREADS, see `limited`)."""
    modules = len(sys.modules)
    if not _controllers or _controllers[0][0] != modules:
        controller = None
        if "numpy" in sys.modules:
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController()
        _controllers[:] = [(len(sys.modules), controller)]
    return _controllers[0][1]


@contextlib.contextmanager
def limited(threads: int) -> Iterator[None]:
    """Native thread pools limited to `threads` while the block runs."""
    controller = _controller()
    # No OpenMP runtime loaded yet: one the block loads reads OMP_NUM_THREADS (OpenBLAS too).
    # Only then: with the variable set, scikit-learn no longer caps its threads at the physical
    # cores.
    set_env = USER_ENV not in os.environ and \
        (controller is None or not controller.select(user_api="openmp").lib_controllers)
    if set_env:
        os.environ[USER_ENV] = str(threads)
    try:
        with controller.limit(limits=threads) if controller is not None \
                else contextlib.nullcontext():
            yield
    finally:
        if set_env:
            os.environ.pop(USER_ENV, None)
