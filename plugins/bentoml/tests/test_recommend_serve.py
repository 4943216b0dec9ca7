"""`POST /recommend` against a real `conveyor serve` of a recommender project (the recommender
template's config over simulated interactions of a seed and size the defaults were not tuned
on, numeric ids): slates with scores, exclude_seen, the cold-start fallback, k above the
catalogue, every bad input a 400 naming the field, /predict refused, a hot swap to a new
champion, and the slate log read back after shutdown. One server for all of it."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import httpx
import pytest
from _serve_support import run_cli
from conveyor.predictions import read_prediction_log
from conveyor.testing import Project

pytestmark = [pytest.mark.server]
pytest.importorskip("conveyor_recsys", reason="the recommender template is conveyor-recsys's")
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="session")
def recommender_trained(tmp_path_factory: pytest.TempPathFactory):
    """`shop`: v1 item_item (the champion), v2 als (registered, promoted by the test)."""
    from conveyor_recsys.simulate import RetailWorld, simulate

    root = tmp_path_factory.mktemp("recommend-template")
    run_cli("init", "shop", "--template", "recommender", cwd=root).check_returncode()
    project = root / "shop"
    frame = simulate(RetailWorld(users=300, items=80, weeks=3, change_week=2, seed=41)
                     ).interactions.drop(columns=["week"])
    frame.to_csv(project / "data" / "interactions.csv", index=False)
    done = run_cli("run", cwd=project)
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_cli("run", "recsys.model=als", cwd=project)  # the gate may not promote it
    assert "shop v2 registered" in done.stdout, done.stdout + done.stderr
    done = run_cli("models", "promote", "shop", "1", "--force", cwd=project)
    assert done.returncode == 0, done.stderr
    return project


def ask(server, body, path="/recommend"):
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return httpx.post(f"{server.url}{path}", content=content, headers=JSON, timeout=30)


async def swap_under_load(url: str, user_id, during) -> list:
    """/recommend from 8 clients while `during()` runs (0.3 s in) and until 50 answers came
    from a version other than the first one seen (or 60 s): (status, version, request id)."""
    results: list = []
    body = json.dumps({"user_id": user_id, "k": 5})
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=60) as client:

        def answered_by_another() -> int:
            return sum(v != results[0][1] for _, v, _ in results) if results else 0

        async def worker() -> None:
            while time.monotonic() < deadline and answered_by_another() < 50:
                resp = await client.post(f"{url}/recommend", content=body, headers=JSON)
                answer = resp.json() if resp.status_code == 200 else {}
                results.append((resp.status_code, answer.get("model_version"),
                                answer.get("request_id")))

        tasks = [asyncio.create_task(worker()) for _ in range(8)]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(during)
        await asyncio.gather(*tasks)
    return results


BAD = [
    ("k=0", {"user_id": 1, "k": 0}, "greater_than_equal", "k"),
    ("k above max_k", {"user_id": 1, "k": 1001}, "serve.recommend.max_k", "k"),
    ("an unknown field", {"user_id": 1, "colour": "blue"}, "extra_forbidden", "colour"),
    ("k as text", {"user_id": 1, "k": "10"}, "int_type", "k"),
    ("exclude_seen as a number", {"user_id": 1, "exclude_seen": 1}, "bool_type",
     "exclude_seen"),
    ("a user id that is neither", {"user_id": 1.5}, "user_id_type", "user_id"),
    ("a text id for a model of numeric ids", {"user_id": "12"}, "user_id_type", "user_id"),
    ("no user_id", {"k": 3}, "missing", "user_id"),
    ("malformed JSON", '{"user_id": 1,', "json_invalid", None),
    ("a list", "[1]", "model_type", None),
]


def test_recommends_refuses_bad_input_swaps_and_logs_every_slate(tmp_path, recommender_trained,
                                                                  serve):
    from conveyor import api

    shutil.copytree(recommender_trained, tmp_path / "shop")
    project = Project(tmp_path / "shop")
    model = api.load_model(project.path, "shop").model
    known = model.user_ids[0].item()
    server = serve(project, "serve.poll_seconds=0.2", "serve.recommend.max_k=1000")

    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["task"] == "recommendation" and meta["version"] == 1
    assert meta["catalogue"] == {"items": model.item_count, "users": model.user_count,
                                 "max_k": 1000}

    resp = ask(server, {"user_id": known, "k": 5})
    assert resp.status_code == 200, resp.text
    slate = resp.json()
    assert (slate["model"], slate["model_version"], slate["user_id"]) == ("shop", 1, known)
    assert slate["fallback"] is False and slate["k_clipped"] is False
    assert [i["position"] for i in slate["items"]] == [1, 2, 3, 4, 5]
    expected = model.recommend(known, 5, exclude_seen=True)
    assert [(i["item_id"], i["score"]) for i in slate["items"]] == list(expected)
    seen = set(model.seen(known))
    assert not seen & {i["item_id"] for i in slate["items"]}

    everything = ask(server, {"user_id": known, "k": 1000, "exclude_seen": False}).json()
    assert len(everything["items"]) == model.item_count and everything["k_clipped"] is True
    assert seen <= {i["item_id"] for i in everything["items"]}  # seen items may come back
    unseen = ask(server, {"user_id": known, "k": 1000}).json()
    assert len(unseen["items"]) == model.item_count - len(seen) and unseen["k_clipped"]

    cold = ask(server, {"user_id": 10**9, "k": 3}).json()
    assert cold["fallback"] is True
    assert [i["item_id"] for i in cold["items"]] == [i for i, _ in model.recommend(10**9, 3)]

    for what, body, rule, field in BAD:
        resp = ask(server, body)
        assert resp.status_code == 400, (what, resp.status_code, resp.text)
        assert rule in resp.text, (what, resp.text)
        if field is not None:
            assert resp.json()["errors"][0]["loc"][0] == field, (what, resp.text)
    resp = ask(server, [{"user_id": known}], path="/predict")
    assert resp.status_code == 409 and "POST /recommend" in resp.json()["error"]
    resp = httpx.post(f"{server.url}/recommend", content=b"user_id=1",
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415 and "user_id" in resp.json()["error"]

    def promote() -> None:
        done = run_cli("models", "promote", "shop", "2", "--force", cwd=project.path)
        assert done.returncode == 0, done.stderr

    under_load = asyncio.run(swap_under_load(server.url, known, promote))
    assert {status for status, _, _ in under_load} == {200}, under_load[:5]
    versions = [version for _, version, _ in under_load]
    assert versions[0] == 1 and versions[-1] == 2 and versions.index(2) >= 8
    after = ask(server, {"user_id": known, "k": 5}).json()
    v2 = api.load_model(project.path, "shop", version=2).model
    assert after["model_version"] == 2
    assert [(i["item_id"], i["score"]) for i in after["items"]] == list(v2.recommend(known, 5))

    assert server.stop() == 0  # SIGTERM: the slate log flushed
    assert "Traceback" not in server.output()
    log = next(read_prediction_log(project.path, "shop"))
    swapped = log["request_id"].isin([rid for _, _, rid in under_load])
    assert swapped.sum() == len(under_load)
    log = log[~swapped].reset_index(drop=True)
    assert list(log.columns) == ["request_id", "timestamp", "model_name", "model_version",
                                 "user_id", "k", "exclude_seen", "fallback", "scores",
                                 "prediction"]
    answered = [slate, everything, unseen, cold, after]
    assert log["request_id"].tolist() == [a["request_id"] for a in answered]
    assert len(set(log["request_id"])) == len(answered)  # 400s are not logged
    assert log["model_version"].tolist() == [1, 1, 1, 1, 2]
    assert log["fallback"].tolist() == [False, False, False, True, False]
    assert log["k"].tolist() == [5, 1000, 1000, 3, 5]
    assert log["exclude_seen"].tolist() == [True, False, True, True, True]
    for row, answer in zip(log.itertuples(), answered, strict=True):
        # position = index + 1 in both
        assert list(row.prediction) == [i["item_id"] for i in answer["items"]]
        assert list(row.scores) == [i["score"] for i in answer["items"]]


def test_a_max_k_below_one_stops_serve_before_it_starts(recommender_trained):
    done = run_cli("serve", "--port", "1", "serve.recommend.max_k=0", cwd=recommender_trained)
    assert done.returncode == 2 and "serve.recommend.max_k is 0" in done.stderr
    assert "Traceback" not in done.stderr
