"""The runs repository (`conveyor.store.Runs`): recording, the one run-id prefix lookup, queries,
and the runner's unsettling of deferred actions."""

from __future__ import annotations

import pytest
from _support import local_project
from conveyor.errors import UsageError
from conveyor.store import MetricTest, ParamTest, RunQuery, Runs, open_store


def _record(runs: Runs, run_id: str, *, created: float, status: str = "completed",
            command: str = "run", params: dict | None = None, metrics: dict | None = None,
            stage_status: str = "completed") -> None:
    runs.open(run_id, project="p", command=command, invocation=None, overrides=["a=1"],
              config={"project": "p"}, config_hash="h", git_commit=None, git_dirty=None,
              packages={}, params=params or {}, data=[("data.csv", "md5:abc", 3)],
              created_at=created)
    runs.record_stage(run_id, name="train", position=0, type="t.fit", type_version="1",
                      status=stage_status, fingerprint=f"fp-{run_id}", cached=False, reason="",
                      started_at=created, duration=0.1, settings={}, upstream={}, files={},
                      outputs={"model": {"sha256": "0" * 64}}, error=None, metrics=metrics)
    runs.close(run_id, status=status, error=None, exit_code=0 if status == "completed" else 1)


@pytest.fixture
def runs(tmp_path, store_url):
    store = open_store(tmp_path, url=store_url)  # SQLite, then a real PostgreSQL server
    yield Runs(store)
    store.close()


def test_a_recorded_run_reads_back_typed(runs):
    _record(runs, "20250101-000000-aaaaaa", created=100.0, params={"model.depth": 3},
            metrics={"accuracy": 0.9})
    run = runs.get("20250101-000000-aaaaaa")
    assert (run.status, run.exit_code, run.command) == ("completed", 0, "run")
    assert run.json("overrides") == ["a=1"] and run.json("config") == {"project": "p"}
    assert runs.params(run.id) == {"model.depth": "3"}
    assert runs.metrics(run.id) == {"accuracy": 0.9}
    assert runs.data(run.id) == {"data.csv": "md5:abc"}
    [stage] = runs.stages(run.id)
    assert stage.name == "train" and stage.cached is False
    assert stage.json("outputs") == {"model": {"sha256": "0" * 64}}
    assert [s.run_id for s in runs.completed_stages(f"fp-{run.id}")] == [run.id]
    assert runs.store.runs.get(run.id) == run                 # the store's own Runs


def test_one_prefix_lookup_exact_unique_ambiguous_unknown(runs):
    _record(runs, "20250101-000000-aaaaaa", created=1.0)
    _record(runs, "20250101-000000-aaaaaa-2", created=2.0)   # an id that extends another
    _record(runs, "20250102-000000-bbbbbb", created=3.0)
    assert runs.resolve("20250102") == "20250102-000000-bbbbbb"
    assert runs.resolve("20250101-000000-aaaaaa") == "20250101-000000-aaaaaa"  # exact wins
    with pytest.raises(UsageError, match="ambiguous"):
        runs.resolve("20250101")
    for unknown in ("2026", "", "2025%", "_"):
        with pytest.raises(UsageError, match="no run with id"):
            runs.resolve(unknown)


def test_queries_filter_by_status_command_time_params_and_metrics(runs):
    _record(runs, "r1", created=1.0, params={"depth": 3}, metrics={"accuracy": 0.7})
    _record(runs, "r2", created=2.0, status="failed", params={"depth": 5})
    _record(runs, "r3", created=3.0, command="reproduce", params={"depth": 5},
            metrics={"accuracy": 0.95})
    ids = lambda query=None, **kw: [r.id for r in runs.list(query, **kw)]  # noqa: E731
    assert ids() == ["r3", "r2", "r1"]
    assert ids(limit=2) == ["r3", "r2"] and ids(limit=1, offset=1) == ["r2"]
    assert ids(RunQuery(status="failed")) == ["r2"]
    assert ids(RunQuery(command="reproduce")) == ["r3"]
    assert ids(RunQuery(since=2.0)) == ["r3", "r2"]
    assert ids(RunQuery(params=(ParamTest("depth", ("5",)),))) == ["r3", "r2"]
    assert ids(RunQuery(params=(ParamTest("depth", ("5",), equal=False),))) == ["r1"]
    assert ids(RunQuery(metrics=(MetricTest("accuracy", ">", 0.8),))) == ["r3"]
    assert ids(order="metric:accuracy", descending=False) == ["r1", "r3", "r2"]
    assert ids(RunQuery(text=("r2",))) == ["r2"]
    assert runs.count(RunQuery(status="completed")) == 2
    assert runs.statuses() == ["completed", "failed"]
    assert runs.stage_counts(["r1", "r3"]) == {"r1": (0, 1), "r3": (0, 1)}
    assert [d.run_id for d in runs.data_inputs_versioned("md5:")] == ["r1", "r2", "r3"]
    with pytest.raises(ValueError):
        MetricTest("accuracy", "; DROP", 1.0)


def test_unsettle_marks_only_completed_stages(runs):
    """Regression: the runner's UPDATE lacked `AND status='completed'`, so a stage that deferred
    an action and then failed was marked "unsettled" over its "failed"."""
    _record(runs, "ok", created=1.0)
    _record(runs, "bad", created=2.0, status="failed", stage_status="failed")
    assert runs.unsettle("ok", ["train", "train"]) == 1
    assert runs.unsettle("bad", ["train"]) == 0
    assert runs.stages("ok")[0].status == "unsettled"
    assert runs.stages("bad")[0].status == "failed"


DEFERS_THEN_FAILS = """
    import conveyor


    def _defer_and_fail(ctx):
        ctx.on_run_success(lambda: "promoted")
        raise ValueError("failed after deferring")


    @conveyor.hookimpl
    def conveyor_stage_types(register):
        register(conveyor.StageType("defers.fail", _defer_and_fail))
"""


def test_a_stage_that_deferred_then_failed_stays_failed(tmp_path):
    project = local_project(tmp_path / "p", pipeline={"only": {"uses": "defers.fail"}},
                            local=["defers"], modules={"defers": DEFERS_THEN_FAILS})
    result = project.run()
    assert result.returncode == 1, result.stderr
    [run] = project.runs()
    store = open_store(project.path)
    try:
        [stage] = Runs(store).stages(run["id"])
    finally:
        store.close()
    assert stage.status == "failed" and "failed after deferring" in (stage.error or "")


DEFERRED_ACTIONS = """
    import conveyor


    def _done(ctx):
        (ctx.project_dir / "deferred.log").open("a").write(ctx.name + "\\n")
        return "promoted"


    def _defers(ctx):
        ctx.on_run_success(lambda: _done(ctx))
        return {}


    def _defers_a_failure(ctx):
        def fail():
            raise ValueError("the deferred action failed")

        ctx.on_run_success(fail)
        return {}


    @conveyor.hookimpl
    def conveyor_stage_types(register):
        register(conveyor.StageType("deferred.ok", _defers))
        register(conveyor.StageType("deferred.fails", _defers_a_failure))
"""


def test_an_action_that_ran_is_not_unsettled_when_a_later_one_fails(tmp_path):
    """Deferred actions run in stage order; when one fails, the stages whose actions already
    happened (a promotion, say) stay completed and only the others are run again next time."""
    project = local_project(tmp_path / "p", local=["deferred"],
                            modules={"deferred": DEFERRED_ACTIONS},
                            pipeline={"first": {"uses": "deferred.ok"},
                                      "second": {"uses": "deferred.fails", "needs": ["first"]}})
    result = project.run()
    assert result.returncode == 70 and "the deferred action failed" in result.stderr  # a bug
    assert (project.path / "deferred.log").read_text() == "first\n"
    [run] = project.runs()
    store = open_store(project.path)
    try:
        statuses = {s.name: s.status for s in Runs(store).stages(run["id"])}
    finally:
        store.close()
    assert statuses == {"first": "completed", "second": "unsettled"}
