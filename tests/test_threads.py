"""Native thread pools sized to the cores actually free (conveyor.threads): the counting on a fake
/proc, the settings, and a real `conveyor run` without the tests' OMP_NUM_THREADS=1 pin beside a
process that keeps a core busy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _support import assert_usage_error, recorded_runs
from conveyor.errors import ConfigError
from conveyor.testing import conveyor_executable
from conveyor.threads import AUTO, CoreMeter, Cores, choose, limited, parse_threads

# --- a fake /proc ------------------------------------------------------------------------------


class FakeMachine:
    """/proc/stat and a clock that move only when told: `tick(seconds, busy={cpu: share},
    own=cores)` lets each CPU work `share` of the time, this process `own` cores of it."""

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.cpus = cpus
        self.now = 100.0
        self.own = 0.0
        self.work = [5000] * cpus  # since boot
        self.idle = [9000] * cpus
        (root / "proc").mkdir()
        (root / "cgroup").mkdir()
        self._write()

    def tick(self, seconds: float, busy: dict[int, float] | None = None, own: float = 0.0) -> None:
        ticks = round(seconds * 100)
        for cpu in range(self.cpus):
            share = (busy or {}).get(cpu, 0.0)
            self.work[cpu] += round(ticks * share)
            self.idle[cpu] += ticks - round(ticks * share)
        self.now += seconds
        self.own += own * seconds
        self._write()

    def _write(self) -> None:
        lines = [f"cpu  {sum(self.work)} 0 0 {sum(self.idle)} 0 0 0 0 0 0"]
        # user nice system idle iowait irq softirq steal guest guest_nice: work split in two
        lines += [f"cpu{n} {w - w // 2} 0 {w // 2} {i} 0 0 0 0 0 0"
                  for n, (w, i) in enumerate(zip(self.work, self.idle, strict=True))]
        lines += ["intr 1 2 3", "ctxt 42", "procs_running 3"]
        (self.root / "proc" / "stat").write_text("\n".join(lines) + "\n")

    def meter(self, affinity: set[int] | None = None) -> CoreMeter:
        cpus = set(range(self.cpus)) if affinity is None else affinity
        return CoreMeter(proc=self.root / "proc", cgroup=self.root / "cgroup",
                         affinity=lambda: cpus, clock=lambda: self.now,
                         own_cpu=lambda: self.own, sleep=lambda s: self.tick(s))


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path)


def test_another_process_busy_on_one_core_leaves_one(machine):
    meter = machine.meter()
    meter.prime()
    machine.tick(1.0, busy={1: 1.0})
    assert meter.measure() == Cores(usable=2, busy=1)
    assert meter.measure().free == 1


def test_a_quiet_machine_leaves_every_core(machine):
    meter = machine.meter()
    meter.prime()
    machine.tick(1.0, busy={0: 0.02, 1: 0.03})  # the odd daemon
    assert meter.measure().free == 2


def test_this_process_own_work_is_not_counted_as_busy(machine):
    meter = machine.meter()
    meter.prime()
    machine.tick(1.0, busy={0: 1.0, 1: 1.0}, own=2.0)  # our previous stage used both cores
    assert meter.measure().busy == 0
    machine.tick(1.0, busy={0: 1.0, 1: 1.0}, own=1.0)  # one of ours, one of someone else's
    assert meter.measure().busy == 1


def test_every_core_busy_still_leaves_one_thread(machine):
    meter = machine.meter()
    meter.prime()
    machine.tick(1.0, busy={0: 1.0, 1: 1.0})
    cores = meter.measure()
    assert (cores.busy, cores.free) == (2, 1)


def test_only_the_cpus_of_the_affinity_mask_count(tmp_path):
    machine = FakeMachine(tmp_path, cpus=4)
    meter = machine.meter(affinity={2, 3})
    meter.prime()
    machine.tick(1.0, busy={0: 1.0, 1: 1.0, 3: 1.0})  # cpus 0 and 1 are not ours to use
    assert meter.measure() == Cores(usable=2, busy=1)


def test_a_cgroup_quota_caps_the_usable_cores(tmp_path):
    machine = FakeMachine(tmp_path, cpus=8)
    (tmp_path / "cgroup" / "cpu.max").write_text("150000 100000\n")
    meter = machine.meter()
    meter.prime()
    machine.tick(1.0)
    cores = meter.measure()
    assert (cores.usable, cores.quota, cores.free) == (2, 1.5, 2)
    (tmp_path / "cgroup" / "cpu.max").write_text("max 100000\n")
    assert meter.measure().usable == 8


def test_a_cgroup_v1_quota(tmp_path):
    machine = FakeMachine(tmp_path, cpus=4)
    (tmp_path / "cgroup" / "cpu").mkdir()
    (tmp_path / "cgroup" / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cgroup" / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert machine.meter().quota() == 1.0


def test_a_short_window_waits_for_the_counters_and_a_long_history_is_not_averaged(machine):
    meter = machine.meter()
    meter.prime()
    machine.tick(0.01)
    assert meter.measure().busy == 0  # waited (the fake sleep moved the clock) rather than guess
    assert machine.now == pytest.approx(100.1)
    machine.tick(30.0)  # a long quiet stage ...
    meter.measure()
    machine.tick(1.0, busy={1: 1.0})  # ... then someone else starts: the window is the last second
    assert meter.measure().busy == 1
    machine.tick(0.05)  # a cheap stage: measured over the last MIN_WINDOW and more, not 0.05 s
    assert meter.measure().busy == 1


def test_no_proc_stat_means_no_measurement(tmp_path):
    meter = CoreMeter(proc=tmp_path / "missing", cgroup=tmp_path, affinity=lambda: {0, 1})
    cores = meter.measure()
    assert (cores.measured, cores.free) == (False, 2)
    assert choose(None, AUTO, "train", measure=lambda: cores, environ={}).line == \
        "threads: 2 of 2 cores (load unknown)"


def test_the_real_proc_stat_reads(tmp_path):
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc here")
    meter = CoreMeter()
    meter.prime()
    cores = meter.measure()
    assert cores.measured and 1 <= cores.free <= cores.usable == len(os.sched_getaffinity(0))


# --- the settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(None, None), ("auto", AUTO), (" Auto ", AUTO),
                                             (3, 3), ("2", 2)])
def test_parse_threads(value, expected):
    assert parse_threads(value, "runner.threads") == expected


@pytest.mark.parametrize("value", [0, -1, "0", "many", 1.5, True, [2]])
def test_parse_threads_refuses(value):
    with pytest.raises(ConfigError, match=r"^pipeline\.train\.threads must be 'auto' or a whole"):
        parse_threads(value, "pipeline.train.threads")


def test_choose_the_stage_setting_then_the_run_setting_then_auto():
    busy = Cores(usable=4, busy=1)
    assert choose(2, AUTO, "train", measure=lambda: busy, environ={}).line == \
        "threads: 2 (pipeline.train.threads)"
    assert choose(None, 3, "train", measure=lambda: busy, environ={}).line == \
        "threads: 3 (runner.threads)"
    choice = choose(AUTO, 3, "train", measure=lambda: busy, environ={})  # the stage asks for auto
    assert (choice.threads, choice.line) == (3, "threads: 3 of 4 cores (1 busy)")
    quota = Cores(usable=2, busy=0, quota=1.5)
    assert choose(None, None, "t", measure=lambda: quota, environ={}).line == \
        "threads: 2 of 2 cores (0 busy, cgroup quota 1.5)"


def test_auto_is_capped_by_the_users_omp_num_threads_and_says_so():
    quiet = Cores(usable=4, busy=0)
    choice = choose(None, AUTO, "train", measure=lambda: quiet, environ={"OMP_NUM_THREADS": "2"})
    assert (choice.threads, choice.line) == (2, "threads: 2 of 4 cores (0 busy, OMP_NUM_THREADS=2)")
    # a number in the config is the user's word for this project: it wins over the environment
    assert choose(None, 3, "train", measure=lambda: quiet,
                  environ={"OMP_NUM_THREADS": "2"}).threads == 3


LIMITED = """
import os, json
import numpy  # OpenBLAS loaded, no OpenMP runtime yet
from threadpoolctl import threadpool_info
from conveyor.threads import limited

def pools():
    return sorted({(p["user_api"], p["num_threads"]) for p in threadpool_info()})

seen = {}
with limited(1):
    seen["env_before_openmp"] = os.environ.get("OMP_NUM_THREADS")
    import sklearn.ensemble  # loads OpenMP inside the stage: it reads the variable
    seen["inside"] = pools()
seen["env_after"] = os.environ.get("OMP_NUM_THREADS")
with limited(2):
    seen["env_with_openmp"] = os.environ.get("OMP_NUM_THREADS")  # threadpoolctl's job now
    seen["second"] = pools()
print(json.dumps(seen))
"""


def test_limited_sets_the_loaded_pools_and_the_ones_a_stage_loads():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", LIMITED], capture_output=True, text=True,
                            env=env, timeout=120, check=True)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["env_before_openmp"] == "1"
    assert seen["inside"] == [["blas", 1], ["openmp", 1]]
    assert seen["env_after"] is None
    assert seen["env_with_openmp"] is None
    assert seen["second"] == [["blas", 2], ["openmp", 2]]


def test_limited_leaves_the_users_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    with limited(1):
        assert os.environ["OMP_NUM_THREADS"] == "7"
    assert os.environ["OMP_NUM_THREADS"] == "7"


# --- through the CLI ---------------------------------------------------------------------------


def test_bad_threads_settings_stop_the_run_before_anything_runs(new_project):
    project = new_project("classification")
    assert_usage_error(project.run("runner.threads=zero"), "runner.threads", "'zero'")
    assert_usage_error(project.run("+pipeline.train.threads=0"), "pipeline.train.threads")
    assert recorded_runs(project) == []


def test_threads_do_not_enter_the_fingerprint(new_project):
    project = new_project("classification")
    first = project.run("runner.threads=1", check=True)
    assert "train: threads: 1 (runner.threads)" in first.stdout
    again = project.run("+pipeline.train.threads=2", check=True)
    assert "train: threads" not in again.stdout  # cached: nothing ran, nothing to size
    assert re.search(r"↺ train\s+cached", again.stdout)


def _busy_loop() -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)  # on a core before the run measures
    return process


def _train_seconds(stdout: str) -> float:
    return float(re.search(r"✓ train\s+completed\s+([\d.]+)s", stdout).group(1))


@pytest.mark.slow
def test_a_run_beside_a_busy_core_sizes_its_pools_and_finishes(new_project):
    """What users meet, without the suite's OMP_NUM_THREADS=1: another process keeps a core
    busy, `conveyor run` gives its stages the cores left and trains in about the time of the
    pinned single-thread fit (unsized, OpenMP's spinning threads made it ten times slower)."""
    from conveyor_sklearn.datagen import customers

    project = new_project("classification")
    customers(20_000).to_csv(project.path / "data" / "customers.csv", index=False)
    overrides = ["data.schema=null"]  # the template's schema holds the ranges of its 3,000 rows
    user_env = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    user_env["COLUMNS"] = "200"
    busy = _busy_loop()
    try:
        started = time.perf_counter()
        unpinned = subprocess.run([conveyor_executable(), "run", *overrides], cwd=project.path, text=True,
                                  capture_output=True, timeout=300, env=user_env)
        elapsed = time.perf_counter() - started
        assert unpinned.returncode == 0, unpinned.stdout + unpinned.stderr
        pinned = subprocess.run([conveyor_executable(), "run", "--force", *overrides], cwd=project.path,
                                text=True, capture_output=True, timeout=300,
                                env={**user_env, "OMP_NUM_THREADS": "1"})
        assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    finally:
        busy.kill()
        busy.wait()
    line = re.search(r"train: threads: (\d+) of (\d+) cores \((\d+) busy", unpinned.stdout)
    assert line, unpinned.stdout
    threads, cores, busy_cores = map(int, line.groups())
    assert busy_cores >= 1  # our busy loop at least
    assert threads == max(1, cores - busy_cores)
    assert elapsed < 120
    assert _train_seconds(unpinned.stdout) <= 2.5 * _train_seconds(pinned.stdout) + 2.0, \
        (unpinned.stdout, pinned.stdout)
