"""`conveyor run` through Hydra's own application runtime, for what only Hydra does:
--multirun with any sweeper or launcher (joblib, optuna, Ray, Slurm), --cfg, --info and shell
completion. Every job is an ordinary Conveyor run recorded in the store."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from conveyor.config import CONFIG_NAME, search_path_override

SWEEP_NO_PROMOTE = "registry.promote_on_gate"
HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
               "--hydra-help", "--resolve", "-p", "--package", "--experimental-rerun"}


def needs_hydra_runtime(args: list[str]) -> bool:
    return any(a.split("=", 1)[0] in HYDRA_FLAGS for a in args)


def run_with_hydra(session: Any, args: list[str], *, force: bool) -> str:
    """Run Hydra's app with the project as primary config; returns this invocation's id."""
    import hydra

    project_dir = session.project_dir
    invocation = session.invocation
    extra = [
        search_path_override(session.host.contributions.config_dirs),
        "hydra/job_logging=disabled",
        "hydra/hydra_logging=disabled",
        "hydra.output_subdir=null",
        f"hydra.run.dir={project_dir}/.conveyor/hydra/run",
        f"hydra.sweep.dir={project_dir}/.conveyor/hydra/multirun/{invocation}",
    ]
    if any(a in ("-m", "--multirun") for a in args):
        # Jobs register their models but do not promote; the best one is promoted afterwards.
        # `++`: the key is typed (the schema's default), whether or not the YAML states it.
        extra.append(f"++{SWEEP_NO_PROMOTE}=false")
    argv = sys.argv
    sys.argv = ["conveyor run", *args, *extra]
    try:
        hydra.main(config_path=str(project_dir), config_name=CONFIG_NAME,
                   version_base="1.3")(HydraJob(session, force=force))()
    finally:
        sys.argv = argv
    return invocation


class HydraJob:
    """Hydra's task function: one job, run in the command's session. Its context travels with
    it, not through the environment: a launcher running jobs in other processes (joblib) or on
    other machines (Ray) pickles it, and the job there opens a session of its own for the same
    project and invocation."""

    __name__ = "conveyor_job"  # what Hydra's wrappers copy (functools.wraps)

    def __init__(self, session: Any, *, force: bool) -> None:
        self.session = session
        self.force = force

    def __getstate__(self) -> dict[str, Any]:
        # The plugin host is this process's; the job's own process loads its own.
        return {"project_dir": str(self.session.project_dir), "debug": self.session.debug,
                "invocation": self.session.invocation, "force": self.force}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from conveyor.session import Session

        self.session = Session(state["project_dir"], debug=state["debug"],
                               invocation=state["invocation"])
        self.force = state["force"]

    def __call__(self, cfg: Any) -> float | None:
        return hydra_job(cfg, self.session, force=self.force)


def hydra_job(cfg: Any, session: Any, *, force: bool) -> float | None:
    """One Hydra job: check the config and run it. Returns the primary metric for sweepers."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from conveyor.config import check_config
    from conveyor.errors import ConveyorError
    from conveyor.messages import print_error
    from conveyor.progress import StageDisplay
    from conveyor.runner import Runner

    project_dir = session.project_dir
    hydra_cfg = HydraConfig.get()
    overrides = tuple(hydra_cfg.overrides.task)
    job = hydra_cfg.job.get("num", None)
    choices = {k: str(v) for k, v in hydra_cfg.runtime.choices.items()
               if not k.startswith("hydra/") and v is not None}
    shown = [o for o in overrides if not o.startswith(f"++{SWEEP_NO_PROMOTE}=")]
    outcome: dict[str, Any] = {"job": job, "overrides": shown, "run_id": None}
    runner = None
    try:
        # The job's plugins are the ones its composed config selects.
        plain = OmegaConf.to_container(cfg, resolve=False)
        if session.use_plugins({"plugins": plain.get("plugins")} if isinstance(plain, dict)
                               else {}):
            print(f"[job {job}] plugins: {', '.join(sorted(session.host.info))}", flush=True)
        config = check_config(cfg, project_dir, overrides, session.host, choices=choices)
        print(f"[job {job}] {' '.join(shown)}", flush=True)
        runner = Runner(session.host, config, display=StageDisplay(), force=force,
                        invocation=session.invocation, session=session)
        result = runner.run()
    except ConveyorError as exc:
        print_error(exc, prefix=f"[job {job}] ")
        run_id = runner.run_id if runner is not None else None
        _record_job(hydra_cfg, {**outcome, "run_id": run_id, "exit_code": exc.exit_code,
                                "error": exc.message})
        return math.nan
    exit_code = 0 if all(v["ok"] for v in result.verdicts) else 1
    _record_job(hydra_cfg, {**outcome, "run_id": result.run_id, "exit_code": exit_code})
    primary = config.get("evaluate.primary") or next(iter(config.get("evaluate.metrics") or []),
                                                     None)
    if primary is None:
        return None
    value = result.metrics.get(primary)
    return float(value) if value is not None else math.nan


def _record_job(hydra_cfg: Any, outcome: dict[str, Any]) -> None:
    """Each job's outcome as a file in the sweep folder: the launcher may run jobs in other
    processes (joblib) or on other machines (Ray, Slurm), so the parent reads these back."""
    import json

    if hydra_cfg.mode is None or str(hydra_cfg.mode) != "RunMode.MULTIRUN":
        return
    folder = Path(hydra_cfg.sweep.dir) / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{outcome['job']}.json.tmp"
    tmp.write_text(json.dumps(outcome))
    tmp.replace(folder / f"{outcome['job']}.json")
