"""Recommender: the three kinds, the popularity fallback, and its .npz file (no pickle,
hash-checked by the store)."""

from __future__ import annotations

import numpy as np
import pytest
from conveyor_recsys import codecs
from conveyor_recsys.models import Recommender

USERS = ["a", "a", "b", "b", "c", "c", "d"]
ITEMS = [1, 2, 2, 3, 1, 3, 4]


@pytest.mark.parametrize("kind", ["popularity", "item_item", "als"])
def test_every_kind_recommends_unseen_items_and_round_trips(tmp_path, kind):
    model = Recommender.fit(kind, USERS, ITEMS, np.ones(len(USERS)), factors=4, iterations=3,
                            seed=1, threads=1)
    slate = model.recommend("a", k=3)
    assert not slate.fallback
    assert all(item not in (1, 2) for item, _ in slate)
    assert [s for _, s in slate] == sorted((s for _, s in slate), reverse=True)
    path = tmp_path / "m.npz"
    codecs.NPZ.dump(model, path)
    with np.load(path, allow_pickle=False) as data:   # arrays only
        assert "user_ids" in data.files
    loaded = codecs.NPZ.load(path)
    assert loaded.kind == kind
    assert loaded.recommend("a", k=3) == slate


def test_an_unknown_user_gets_the_flagged_popularity_fallback():
    model = Recommender.fit("item_item", USERS, ITEMS, np.ones(len(USERS)))
    slate = model.recommend("nobody", k=2, seen=[2])
    assert slate.fallback
    assert [item for item, _ in slate] == [1, 3]       # most popular, less what was seen


def test_k_larger_than_the_catalogue_returns_every_unseen_item():
    model = Recommender.fit("popularity", USERS, ITEMS, np.ones(len(USERS)))
    assert sorted(item for item, _ in model.recommend("d", k=100)) == [1, 2, 3]


def test_a_file_with_an_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, user_ids=np.array([object()], dtype=object))
    with pytest.raises(codecs.UnreadableModel, match="not a readable"):
        codecs.NPZ.load(path)


def test_the_store_refuses_a_tampered_model(tmp_path):
    import subprocess

    from conveyor import api
    from conveyor.errors import StoreError
    from conveyor.store import ArtifactRef, open_store
    from conveyor.testing import conveyor_executable

    pytest.importorskip("conveyor_recsys.metrics", reason="conveyor_recsys.metrics not merged")
    subprocess.run([conveyor_executable(), "init", "shop", "--template", "recommender"],
                   cwd=tmp_path, check=True, capture_output=True)
    project = tmp_path / "shop"
    subprocess.run([conveyor_executable(), "run", "recsys.model=popularity"], cwd=project,
                   check=True, capture_output=True)
    loaded = api.load_model(project)
    assert isinstance(loaded.model, Recommender)
    assert loaded.model.recommend("u0001", k=5)
    store = open_store(project)
    path = store.artifacts.path(ArtifactRef.from_dict(loaded.version.artifact))
    store.close()
    assert path.suffix == ".npz"
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(StoreError, match="tampered"):
        api.load_model(project)
