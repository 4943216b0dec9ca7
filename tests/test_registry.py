"""The gate decides promotion; promote, rollback and history go through the registry."""

from __future__ import annotations

import json

import pytest
from conveyor.errors import StoreError, UsageError
from conveyor.store import Registry, open_store


def _models(project):
    return json.loads(project.cli("models", "list", "--json", check=True).stdout)


def test_a_version_that_misses_the_gate_is_registered_but_never_promoted(new_project):
    project = new_project()
    project.run(check=True)
    missed = project.run("evaluate.gate.balanced_accuracy='>= 0.99'")
    assert missed.returncode == 1
    assert "registered, not promoted: balanced_accuracy" in missed.stdout
    versions = _models(project)
    assert [(v["version"], v["decision"], v["aliases"]) for v in versions] == [
        (1, "passed", ["champion"]), (2, "rejected", [])]
    assert any("misses >= 0.99" in reason for reason in versions[1]["reasons"])
    refused = project.cli("models", "promote", "proj", "2")
    assert refused.returncode == 1 and "did not pass the evaluation gate" in refused.stderr
    forced = project.cli("models", "promote", "proj", "2", "--force", "--reason", "demo", "--json")
    assert json.loads(forced.stdout) == {"name": "proj", "champion": 2, "previous": 1}
    history = json.loads(project.cli("models", "history", "proj", "--json", check=True).stdout)
    assert [(h["version"], h["action"], h["forced"]) for h in history] == [
        (1, "gate", 0), (2, "promote", 1)]
    assert history[1]["reason"] == "demo"


def test_a_slice_below_its_floor_blocks_promotion(new_project):
    project = new_project()
    result = project.run("evaluate.slices.gate.balanced_accuracy='>= 0.95'")
    assert result.returncode == 1
    version = _models(project)[0]
    assert version["decision"] == "rejected"
    assert any(r.startswith("slice region=") for r in version["reasons"])


def test_relative_threshold_compares_with_the_champion_on_the_same_test_set(new_project):
    project = new_project()
    project.run(check=True)
    # A far weaker model: relative rule f1_macro >= champion - 0.02 must reject it.
    weak = project.run("model=logistic_regression", "model.params.C=0.00001")
    assert weak.returncode == 1
    version = _models(project)[1]
    assert any(r.startswith("f1_macro") and "champion - 0.02" in r and "misses" in r
               for r in version["reasons"])


def test_rollback_walks_back_through_earlier_champions(tmp_path, store_url):
    store = open_store(tmp_path, url=store_url)
    registry = Registry(store)
    for n in (1, 2, 3):
        registry.register(name="m", run_id=f"r{n}", stage="register", artifact={}, metrics={},
                          gate={}, decision="passed", config_hash="h", data={})
        registry.set_alias("m", "champion", n, action="gate", reason="passed")
    assert registry.rollback("m") == (3, 2)
    assert registry.rollback("m") == (2, 1)
    with pytest.raises(UsageError, match="no earlier champion"):
        registry.rollback("m")
    assert registry.aliases("m") == {"champion": 1}


def test_rollback_passes_over_a_champion_promoted_again(tmp_path, store_url):
    """Issue 14.9: promoting the champion again made `rollback` say 'from version 4 to 4'."""
    store = open_store(tmp_path, url=store_url)
    registry = Registry(store)
    for n in (1, 2):
        registry.register(name="m", run_id=f"r{n}", stage="register", artifact={}, metrics={},
                          gate={}, decision="passed", config_hash="h", data={})
        registry.set_alias("m", "champion", n, action="gate", reason="passed")
    registry.set_alias("m", "champion", 2, action="promote", reason="again")
    assert registry.rollback("m") == (2, 1)


def test_a_tampered_artifact_is_refused_on_load(new_project):
    project = new_project()
    project.run(check=True)
    store = open_store(project.path)
    champion = Registry(store).alias("proj")
    from conveyor.store import ArtifactRef

    ref = ArtifactRef.from_dict(champion.artifact)
    path = store.artifacts.path(ref)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt or was tampered with"):
        store.artifacts.verify(ref)


def test_promotion_is_refused_when_the_champion_moved_during_the_run(tmp_path, store_url):
    from conveyor.store.registry import AliasMoved

    registry = Registry(open_store(tmp_path, url=store_url))
    for n in (1, 2):
        registry.register(name="m", run_id=f"r{n}", stage="register", artifact={}, metrics={},
                          gate={}, decision="passed", config_hash="h", data={})
    registry.set_alias("m", "champion", 1, action="gate", reason="first", expect=None)
    with pytest.raises(AliasMoved):  # run 2 compared itself with "no champion"
        registry.set_alias("m", "champion", 2, action="gate", reason="late", expect=None)
    assert registry.aliases("m") == {"champion": 1}
    registry.note("m", 2, "not promoted: the champion changed")
    assert registry.get("m", 2).gate["reasons"] == ["not promoted: the champion changed"]


def test_promote_checks_the_recorded_gate_decision_and_records_actor_and_reason(tmp_path, store_url):
    from conveyor.errors import GateRejected

    registry = Registry(open_store(tmp_path, url=store_url))
    for n, decision in ((1, "passed"), (2, "rejected")):
        registry.register(name="m", run_id=f"r{n}", stage="register", artifact={}, metrics={},
                          gate={"reasons": [f"reason {n}"]}, decision=decision,
                          config_hash="h", data={})
    assert registry.promote("m", 1, reason="first", actor="ann") is None
    with pytest.raises(GateRejected, match="reason 2"):
        registry.promote("m", 2)
    assert registry.aliases("m") == {"champion": 1}
    assert registry.promote("m", 2, force=True, reason="hotfix", actor="bob") == 1
    assert registry.rollback("m", reason="hotfix broke", actor="cy") == (2, 1)
    moves = [(h["version"], h["action"], h["forced"], h["actor"], h["reason"])
             for h in registry.history("m")]
    assert moves == [(1, "promote", 0, "ann", "first"), (2, "promote", 1, "bob", "hotfix"),
                     (1, "rollback", 0, "cy", "hotfix broke")]
