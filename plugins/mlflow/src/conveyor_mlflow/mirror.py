"""The mirror: a project's runs, model versions and aliases copied to an MLflow tracking server.

Nothing is kept locally about what was mirrored: MLflow's own records say it, through tags.

* a run is the MLflow run tagged ``conveyor.run_id`` = our run id; it is whole once tagged
  ``conveyor.mirror`` = ``complete`` (the last thing written). A run found without that tag (a
  mirror cut short) is deleted and mirrored again, so params and metrics are never doubled;
* a model version is the MLflow version of the registered model of the same name tagged
  ``conveyor.version`` = our version number (MLflow numbers its versions itself);
* an alias is set on the MLflow version mapped from ours, and moved or removed with ours.

`Mirror.sync` compares and writes only what differs: mirroring twice changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.store import ArtifactRef, Registry, Runs, Store, StoredRun

from conveyor_mlflow.settings import MlflowConfig

RUN_ID_TAG = "conveyor.run_id"
COMPLETE_TAG = "conveyor.mirror"
VERSION_TAG = "conveyor.version"
#: Our run statuses as MLflow's (anything else, e.g. "interrupted": KILLED).
STATUSES = {"completed": "FINISHED", "failed": "FAILED"}
#: MLflow's limits on one log_batch call and on a param's and a tag's value.
PARAMS_PER_BATCH, METRICS_PER_BATCH, TAGS_PER_BATCH = 100, 1000, 100
MAX_PARAM, MAX_TAG = 6000, 8000


@dataclass
class Summary:
    """What one `Mirror.sync` wrote (all zero when MLflow was already up to date)."""

    runs: int = 0
    versions: int = 0
    version_tags: int = 0
    aliases: int = 0
    skipped: list[str] = field(default_factory=list)  # artifacts above mlflow.max_artifact_mb

    @property
    def changed(self) -> bool:
        return bool(self.runs or self.versions or self.version_tags or self.aliases)

    def line(self) -> str:
        parts = [_count(self.runs, "run"), _count(self.versions, "model version"),
                 _count(self.aliases, "alias move")]
        if self.version_tags:
            parts.append(_count(self.version_tags, "version tag"))
        return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@contextmanager
def client_environment(settings: MlflowConfig) -> Iterator[None]:
    """MLflow's client as a mirror wants it, while mirroring: a failed request retried for
    `mlflow.timeout` x `mlflow.retries`, not minutes (a variable the user set wins), and no
    chatter (run links on stdout, "waiting for model version" logs)."""
    wanted = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(settings.timeout))),
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.retries),
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
              "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    added = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in added})
    # Imported first: MLflow sets its loggers' levels when it is first imported, which would
    # undo a level set before ("Waiting up to 300 seconds for model version ..." lines).
    import mlflow  # noqa: F401

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        for name in added:
            os.environ.pop(name, None)


class Mirror:
    """Mirrors one project's store to the MLflow server of `settings` (`client` an
    `mlflow.tracking.MlflowClient` for it). `say` prints a progress line."""

    def __init__(self, client: Any, settings: MlflowConfig, project: str, store: Store,
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.client, self.settings, self.store, self.say = client, settings, store, say
        self.experiment_name = settings.experiment or project
        self.runs, self.registry = Runs(store), Registry(store)
        self._experiment_id: str | None = None

    # --- what MLflow has -------------------------------------------------------------------

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                try:
                    self._experiment_id = self.client.create_experiment(self.experiment_name)
                except MlflowException:
                    # Another process made it meanwhile.
                    found = self.client.get_experiment_by_name(self.experiment_name)
                    if found is None:
                        raise
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    raise RuntimeError(f"MLflow experiment '{self.experiment_name}' is deleted: "
                                       "restore it, or set mlflow.experiment to another name")
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def mirrored(self, since: float | None = None, run_id: str | None = None) -> dict[str, Any]:
        """{our run id: MLflow run} of the active MLflow runs mirroring ours (started at or
        after `since`, Unix seconds, when given; only `run_id`'s when given)."""
        where = f"tags.`{RUN_ID_TAG}` != ''"
        if since is not None:
            where += f" and attributes.start_time >= {int(since * 1000)}"
        if run_id is not None:
            where = f"tags.`{RUN_ID_TAG}` = '{run_id}'"
        found: dict[str, Any] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], where, max_results=1000,
                                           page_token=token)
            for run in page:
                ours = run.data.tags.get(RUN_ID_TAG)
                # A whole mirror wins over a partial one of the same run.
                if ours not in found or run.data.tags.get(COMPLETE_TAG) == "complete":
                    found[ours] = run
            token = page.token
            if not token:
                return found

    # --- the whole sync --------------------------------------------------------------------

    def sync(self, *, current: tuple[str, str] | None = None, recent: int | None = None
             ) -> Summary:
        """Mirror what MLflow lacks: the runs (the newest `recent` of them, all when None),
        then every model version and alias. `current` is (run id, final status) of the run
        that is ending (its status is not in the store yet)."""
        summary = Summary()
        self.store.mark_interrupted()
        stored = [r for r in self.runs.list(limit=recent)
                  if r.status != "running" or (current and r.id == current[0])]
        if current and current[0] not in {r.id for r in stored}:
            stored.append(self.runs.get(current[0]))  # newer runs of others came after it
        times = [t for t in (_number(r.created_at) for r in stored) if t is not None]
        since = min(times, default=None) if recent else None
        have = self.mirrored(since)
        todo = []
        for run in reversed(stored):  # oldest first: MLflow lists them in our order
            status = current[1] if current and run.id == current[0] else run.status
            if not self._up_to_date(have.get(run.id), status):
                todo.append((run, status))
        for number, (run, status) in enumerate(todo, 1):
            self.say(f"run {run.id} ({status}) [{number}/{len(todo)}]")
            have[run.id] = self.mirror_run(run, status, have.get(run.id), summary)
            summary.runs += 1
        self.mirror_models(have, summary)
        return summary

    @staticmethod
    def _up_to_date(found: Any, status: str) -> bool:
        return (found is not None and found.data.tags.get(COMPLETE_TAG) == "complete"
                and found.data.tags.get("conveyor.status") == status)

    # --- one run ---------------------------------------------------------------------------

    def mirror_run(self, run: StoredRun, status: str, found: Any, summary: Summary) -> Any:
        """Write one run whole (again, if `found` is a partial or outdated mirror of it)."""
        if found is not None and found.data.tags.get(COMPLETE_TAG) == "complete":
            # Mirrored whole before, with another status (a run interrupted then marked so):
            # only the status changes.
            mlflow_id = found.info.run_id
            self.client.set_tag(mlflow_id, "conveyor.status", status)
            self.client.set_terminated(mlflow_id, status=STATUSES.get(status, "KILLED"))
            return self.client.get_run(mlflow_id)
        if found is not None:
            self.client.delete_run(found.info.run_id)
        from mlflow.entities import Metric, Param, RunTag

        created = _number(run.created_at) or time.time()
        tags = self._run_tags(run, status)
        mlflow_run = self.client.create_run(self.experiment_id, start_time=int(created * 1000),
                                            tags={RUN_ID_TAG: run.id}, run_name=run.id)
        mlflow_id = mlflow_run.info.run_id
        params = [Param(key, _text(value, MAX_PARAM))
                  for key, value in _named(self.runs.params(run.id)).items()]
        stamp = int((_number(run.finished_at) or created) * 1000)
        numbers = {f"{v.stage}.{v.key}": _float(v.value) for v in self.runs.metric_values(run.id)}
        metrics = [Metric(key, number, stamp, 0) for key, number in
                   _named({k: n for k, n in numbers.items() if n is not None}).items()]
        tag_list = [RunTag(key, _text(value, MAX_TAG)) for key, value in _named(tags).items()]
        for chunk in _chunks(params, PARAMS_PER_BATCH):
            self.client.log_batch(mlflow_id, params=chunk)
        for chunk in _chunks(metrics, METRICS_PER_BATCH):
            self.client.log_batch(mlflow_id, metrics=chunk)
        for chunk in _chunks(tag_list, TAGS_PER_BATCH):
            self.client.log_batch(mlflow_id, tags=chunk)
        self._log_artifacts(run, mlflow_id, summary)
        finished = _number(run.finished_at) or time.time()
        self.client.set_terminated(mlflow_id, status=STATUSES.get(status, "KILLED"),
                                   end_time=int(finished * 1000))
        self.client.set_tag(mlflow_id, COMPLETE_TAG, "complete")
        return self.client.get_run(mlflow_id)

    def _run_tags(self, run: StoredRun, status: str) -> dict[str, str]:
        tags = {"conveyor.status": status, "conveyor.project": run.project or "",
                "conveyor.command": run.command or "", "conveyor.config_hash": run.config_hash or "",
                "conveyor.invocation": run.invocation or ""}
        if run.git_commit:
            tags["conveyor.git_commit"] = run.git_commit
            tags["mlflow.source.git.commit"] = run.git_commit
        if run.git_dirty is not None:
            tags["conveyor.git_dirty"] = str(run.git_dirty).lower()
        if run.overrides:
            tags["conveyor.overrides"] = " ".join(run.json("overrides", []))
        if run.error:
            tags["conveyor.error"] = run.error
        for path, version in self.runs.data(run.id).items():
            tags[f"conveyor.data.{path}"] = version or ""
        return {key: value for key, value in tags.items() if value != ""}

    def _log_artifacts(self, run: StoredRun, mlflow_id: str, summary: Summary) -> None:
        import yaml

        config = run.json("config", {})
        self.client.log_text(mlflow_id, yaml.safe_dump(config, sort_keys=False),
                             "conveyor/config.yaml")
        limit = self.settings.max_artifact_mb * 1e6
        skipped = []
        with tempfile.TemporaryDirectory(prefix="conveyor-mlflow-") as scratch:
            for stage, name, ref in self._outputs(run.id):
                label = f"{stage}/{name}{ref.suffix}"
                if ref.size > limit:
                    skipped.append(f"{label} ({ref.size / 1e6:.1f} MB)")
                    continue
                named = Path(scratch) / stage / f"{name}{ref.suffix}"
                named.parent.mkdir(exist_ok=True)
                shutil.copyfile(self._local_file(ref), named)
                self.client.log_artifact(mlflow_id, str(named), artifact_path=f"outputs/{stage}")
                named.unlink()
        if skipped:
            self.client.set_tag(mlflow_id, "conveyor.skipped_artifacts",
                                _text(", ".join(skipped), MAX_TAG))
            summary.skipped.extend(f"{run.id} {label}" for label in skipped)
            self.say(f"run {run.id}: not uploaded, above mlflow.max_artifact_mb="
                     f"{self.settings.max_artifact_mb:g}: {', '.join(skipped)}")

    def _outputs(self, run_id: str) -> list[tuple[str, str, ArtifactRef]]:
        """(stage, output name, reference) of a run's stored outputs."""
        found = []
        for stage in self.runs.stages(run_id, status="completed"):
            for name, ref in sorted((stage.json("outputs", {}) or {}).items()):
                if isinstance(ref, Mapping) and "sha256" in ref:
                    found.append((stage.name, name, ArtifactRef.from_dict(dict(ref))))
        return found

    def _local_file(self, ref: ArtifactRef) -> Path:
        artifacts = self.store.artifacts
        # `local_path` where the store keeps artifacts remotely (object storage): a verified
        # local copy; `verify` before it had that name.
        getter = getattr(artifacts, "local_path", None) or artifacts.verify
        return Path(getter(ref))

    # --- model versions and aliases --------------------------------------------------------

    def mirror_models(self, runs: dict[str, Any], summary: Summary) -> None:
        """Every registered version (with its gate decision) and every alias."""
        versions = self.registry.versions()
        for name in sorted({v.name for v in versions}):
            self._ensure_model(name)
            theirs = self._versions_of(name)
            numbers: dict[int, str] = {}
            for version in (v for v in versions if v.name == name):
                if version.problems:
                    self.say(f"{name} version {version.version} not mirrored: its record is "
                             f"damaged ({'; '.join(version.problems)})")
                    continue
                tags = _version_tags(version)
                existing = theirs.get(version.version)
                if existing is None:
                    existing = self._create_version(version, tags, runs)
                    summary.versions += 1
                else:
                    for key, value in tags.items():
                        if existing.tags.get(key) != value:
                            self.client.set_model_version_tag(name, existing.version, key, value)
                            summary.version_tags += 1
                numbers[version.version] = str(existing.version)
            summary.aliases += self._mirror_aliases(name, numbers)

    def _ensure_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                self.client.create_registered_model(
                    name, tags={"conveyor.project": self.experiment_name},
                    description="Mirrored from Conveyor's registry (conveyor-mlflow).")
            except MlflowException as again:
                if again.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    def _versions_of(self, name: str) -> dict[int, Any]:
        found: dict[int, Any] = {}
        token = None
        while True:
            page = self.client.search_model_versions(f"name = '{name}'", max_results=200,
                                                     page_token=token)
            for version in page:
                ours = version.tags.get(VERSION_TAG)
                if ours and ours.isdigit():
                    found.setdefault(int(ours), version)
            token = page.token
            if not token:
                return found

    def _create_version(self, version: Any, tags: dict[str, str], runs: dict[str, Any]) -> Any:
        if version.run_id not in runs:  # older than the runs compared this time
            runs.update(self.mirrored(run_id=version.run_id))
        mlflow_run = runs.get(version.run_id)
        if mlflow_run is None or mlflow_run.data.tags.get(COMPLETE_TAG) != "complete":
            # Its run was never mirrored whole: mirror it now.
            stored = self.runs.get(version.run_id)
            self.say(f"run {stored.id} (trained {version.name} version {version.version})")
            mlflow_run = self.mirror_run(stored, stored.status, mlflow_run, Summary())
            runs[version.run_id] = mlflow_run
        source = f"{mlflow_run.info.artifact_uri}/{self._model_path(version, mlflow_run)}"
        self.say(f"{version.name} version {version.version} ({version.decision})")
        return self.client.create_model_version(version.name, source,
                                                run_id=mlflow_run.info.run_id, tags=tags)

    def _model_path(self, version: Any, mlflow_run: Any) -> str:
        """Where the version's model file is among its run's mirrored artifacts (uploaded
        now, whatever its size, when it is not there)."""
        ref = ArtifactRef.from_dict(version.artifact)
        for stage, name, output in self._outputs(version.run_id):
            if output.sha256 == ref.sha256 and output.size <= self.settings.max_artifact_mb * 1e6:
                return f"outputs/{stage}/{name}{ref.suffix}"
        with tempfile.TemporaryDirectory(prefix="conveyor-mlflow-") as scratch:
            named = Path(scratch) / f"model{ref.suffix}"
            shutil.copyfile(self._local_file(ref), named)
            folder = f"models/{version.name}-v{version.version}"
            self.client.log_artifact(mlflow_run.info.run_id, str(named), artifact_path=folder)
        return f"{folder}/model{ref.suffix}"

    def _mirror_aliases(self, name: str, numbers: dict[int, str]) -> int:
        ours = self.registry.aliases(name)
        theirs = dict(self.client.get_registered_model(name).aliases or {})
        moved = 0
        for alias, version in sorted(ours.items()):
            target = numbers.get(version)
            if target is not None and str(theirs.get(alias)) != target:
                self.client.set_registered_model_alias(name, alias, target)
                self.say(f"{name}@{alias} -> version {version}")
                moved += 1
        # Aliases our registry once had and no longer has; others are the team's own.
        ever = {move["alias"] for move in self.registry.history(name)}
        for alias in sorted((ever & theirs.keys()) - ours.keys()):
            self.client.delete_registered_model_alias(name, alias)
            moved += 1
        return moved


def _version_tags(version: Any) -> dict[str, str]:
    gate = version.gate or {}
    tags = {VERSION_TAG: str(version.version), "conveyor.run_id": version.run_id,
            "conveyor.gate.decision": version.decision or "",
            "conveyor.gate.reasons": _text("; ".join(map(str, gate.get("reasons", []))), MAX_TAG),
            "conveyor.config_hash": version.config_hash or ""}
    for metric, value in sorted(version.metrics.items()):
        tags[f"conveyor.metric.{metric}"] = repr(float(value))
    return {key: value for key, value in tags.items() if value != ""}


def _named(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` under names MLflow accepts for params, metrics and tags (letters, digits,
    ``_ - . / `` and spaces, a normalised path, 250 characters): others become ``_``; of two
    names that end up the same, the first (in sorted order) is kept."""
    named: dict[str, Any] = {}
    for key, value in sorted(values.items()):
        name = re.sub(r"[^/\w.\- ]", "_", key)[:250]
        if posixpath.normpath(name) != name or name.startswith(("/", ".")):
            name = name.replace("/", "_").lstrip(".") or "_"
        named.setdefault(name, value)
    return named


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _text(value: Any, limit: int) -> str:
    """A param or tag value: a JSON string as its text, anything else as JSON; cut at MLflow's
    limit with a mark saying so."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
            value = decoded if isinstance(decoded, str) else value
        except ValueError:
            pass
    else:
        value = json.dumps(value, sort_keys=True, default=str)
    return value if len(value) <= limit else value[:limit - 12] + "…(truncated)"


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return _number(value)
