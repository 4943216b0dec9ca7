"""`Recommender`: a trained candidate generator, as plain numpy arrays.

Every kind keeps the same arrays, so a model saves to one `.npz` and loads with
`numpy.load(allow_pickle=False)` (codecs.NPZ): nothing in the file is code.

* `user_ids`, `item_ids`: the ids seen in training (numbers, or text stored as unicode arrays);
  row i of the user-item matrix is `user_ids[i]`, column j is `item_ids[j]`.
* `popularity`: the summed interaction weight per item: the baseline, and the fallback for
  users the model never saw (their slates are flagged `fallback`).
* `history_indptr`, `history_indices`: the training user-item matrix (CSR, no values): what
  each known user has seen, which `exclude_seen` leaves out and `item_item` scores from.
* `popularity`: item score; `item_item`: an item-item cosine similarity kept as CSR
  (`similarity_*`, the `neighbours` most similar items per item); `als`: `user_factors`,
  `item_factors` from implicit's AlternatingLeastSquares.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

KINDS = ("popularity", "item_item", "als")
BLOCK = 1024  # known users scored per matrix product by recommend_batch (40 MB at 10k items)
CHUNK = 64    # items per maximum when recommend_batch bounds a user's k-th best score


class Slate(list):
    """A list of (item, score), best first; `fallback` is True when the user was unknown and
    the slate is the popularity fallback."""

    fallback: bool = False


def plain_id(value: Any) -> Any:
    """A user or item id as a plain Python value (`numpy.int64(7)` -> `7`, `numpy.str_` ->
    `str`): the models' id indexes are keyed by plain values, so an id from an array finds
    the same entry as one from JSON."""
    return value.item() if hasattr(value, "item") else value


class Recommender:
    """A trained candidate generator (`kind`: popularity, item_item or als)."""

    def __init__(self, kind: str, arrays: Mapping[str, Any]) -> None:
        import numpy as np

        if kind not in KINDS:
            raise ValueError(f"unknown recommender kind {kind!r}; one of {', '.join(KINDS)}")
        self.kind = kind
        self.arrays = {name: np.asarray(value) for name, value in arrays.items()}
        self.user_ids = self.arrays["user_ids"]
        self.item_ids = self.arrays["item_ids"]
        self.popularity = self.arrays["popularity"].astype("float64")
        # tolist() gives the same plain Python ids as plain_id(), without a call per id
        self._user_index = dict(zip(self.user_ids.tolist(), range(len(self.user_ids)),
                                    strict=True))
        self._item_index = dict(zip(self.item_ids.tolist(), range(len(self.item_ids)),
                                    strict=True))
        # conveyor.serving.RecommendingModel: what a server reads without importing this plugin
        self.item_count = len(self.item_ids)
        self.user_count = len(self.user_ids)
        self.user_id_type: type = {"i": int, "u": int, "U": str}.get(self.user_ids.dtype.kind,
                                                                      object)
        self._fallback_slates: dict[int, list[tuple[Any, float]]] = {}

    # --- building -------------------------------------------------------------------------

    @classmethod
    def fit(cls, kind: str, users: Any, items: Any, weights: Any, *, factors: int = 32,
            iterations: int = 15, regularization: float = 0.01, alpha: float = 1.0,
            neighbours: int = 50, seed: int = 0, threads: int | None = None) -> Recommender:
        """Train `kind` on interactions given as three equal-length arrays."""
        import numpy as np
        import scipy.sparse as sp

        user_ids, user_codes = np.unique(np.asarray(users), return_inverse=True)
        item_ids, item_codes = np.unique(np.asarray(items), return_inverse=True)
        matrix = sp.csr_matrix((np.asarray(weights, dtype="float32"), (user_codes, item_codes)),
                               shape=(len(user_ids), len(item_ids)))
        matrix.sum_duplicates()
        popularity = np.asarray(matrix.sum(axis=0)).ravel().astype("float64")
        arrays: dict[str, Any] = {
            "user_ids": _storable(user_ids), "item_ids": _storable(item_ids),
            "popularity": popularity,
            "history_indptr": matrix.indptr.astype("int64"),
            "history_indices": matrix.indices.astype("int64")}
        if kind == "item_item":
            arrays.update(_item_similarity(matrix, neighbours))
        elif kind == "als":
            arrays.update(_als(matrix, factors=factors, iterations=iterations,
                               regularization=regularization, alpha=alpha, seed=seed,
                               threads=threads))
        elif kind != "popularity":
            raise ValueError(f"unknown recommender kind {kind!r}; one of {', '.join(KINDS)}")
        return cls(kind, arrays)

    def baseline(self) -> Recommender:
        """The popularity model over the same training data."""
        keep = ("user_ids", "item_ids", "popularity", "history_indptr", "history_indices")
        return Recommender("popularity", {name: self.arrays[name] for name in keep})

    # --- scoring --------------------------------------------------------------------------

    def knows(self, user_id: Hashable) -> bool:
        return plain_id(user_id) in self._user_index

    def seen(self, user_id: Hashable) -> list[Any]:
        """The items a known user interacted with in training (empty for an unknown user)."""
        row = self._user_index.get(plain_id(user_id))
        if row is None:
            return []
        indptr, indices = self.arrays["history_indptr"], self.arrays["history_indices"]
        return [plain_id(self.item_ids[j]) for j in indices[indptr[row]:indptr[row + 1]]]

    def scores(self, user_id: Hashable) -> tuple[Any, bool]:
        """A score per item (aligned with `item_ids`) and whether it is the fallback."""
        row = self._user_index.get(plain_id(user_id))
        if row is None or self.kind == "popularity":
            return self.popularity, row is None
        return self._known_scores(row), False

    def _known_scores(self, row: int) -> Any:
        """A known user's scores as a new float64 array: one matrix-vector product (als), or
        the summed similarity rows of the user's items gathered in one go (item_item)."""
        import numpy as np

        if self.kind == "als":
            return (self.arrays["item_factors"] @ self.arrays["user_factors"][row]).astype(
                "float64")
        history = self._history(row)
        sim_ptr = self.arrays["similarity_indptr"]
        starts, ends = sim_ptr[history], sim_ptr[history + 1]
        lengths = ends - starts
        # the positions of every similarity entry of every history item, in history order, so
        # the sums are added up in the same order as one row at a time would
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            lengths.sum())
        scores = np.bincount(self.arrays["similarity_indices"][positions],
                             weights=self.arrays["similarity_data"][positions],
                             minlength=len(self.item_ids))
        # ties (and users whose items have no neighbours) fall back to popularity, scaled below 1
        scores += self.popularity / (self.popularity.max() or 1.0) * 1e-6
        return scores

    def _history(self, row: int) -> Any:
        indptr = self.arrays["history_indptr"]
        return self.arrays["history_indices"][indptr[row]:indptr[row + 1]]

    def recommend(self, user_id: Hashable, k: int = 10, exclude_seen: bool = True,
                  seen: Iterable[Hashable] | None = None) -> Slate:
        """The top `k` items for `user_id` as (item, score), best first.

        `exclude_seen` leaves out what the user interacted with in training, and `seen` (if
        given) too. An unknown user gets the popularity fallback, flagged `slate.fallback`.
        Equal scores are in item order. A slate is one vectorised scoring and a partial sort
        (no loop over items); the fallback slate of each k is computed once and kept."""
        import numpy as np

        if k < 1:
            raise ValueError(f"k is {k}; it must be at least 1")
        row = self._user_index.get(plain_id(user_id))
        excluded = [j for j in map(self._item_index.get, map(plain_id, seen or ())) if j is not None]
        if row is None and not excluded:
            cached = self._fallback_slates.get(k)
            if cached is None:
                cached = self._fallback_slates[k] = self._top(self.popularity.copy(), k)
            slate = Slate(cached)
            slate.fallback = True
            return slate
        if row is None or self.kind == "popularity":
            scores = self.popularity.copy()
        else:
            scores = self._known_scores(row)
        if exclude_seen and row is not None:
            scores[self._history(row)] = -np.inf
        if excluded:
            scores[excluded] = -np.inf
        slate = Slate(self._top(scores, k))
        slate.fallback = row is None
        return slate

    def _top(self, scores: Any, k: int) -> list[tuple[Any, float]]:
        """(item, score) of the k best finite scores, best first, equal scores in item order."""
        import numpy as np

        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        best = scores[top]
        keep = np.isfinite(best)
        if not keep.all():
            top, best = top[keep], best[keep]
        return list(zip(self.item_ids[top].tolist(), best.tolist(), strict=True))

    def recommend_many(self, users: Collection[Hashable], k: int, exclude_seen: bool = True
                       ) -> tuple[dict[Hashable, list[Hashable]], int]:
        """Top-k item lists for many users, and how many of them got the fallback."""
        out: dict[Hashable, list[Hashable]] = {}
        fallbacks = 0
        for user in users:
            slate = self.recommend(user, k, exclude_seen=exclude_seen)
            fallbacks += slate.fallback
            out[user] = [item for item, _ in slate]
        return out, fallbacks

    def recommend_batch(self, users: Sequence[Hashable], k: int, exclude_seen: bool = True
                        ) -> list[Slate]:
        """The slate of each of `users`, in their order, as `recommend` gives it (scores equal
        up to float rounding; equal scores at the cut are taken in item order, where
        `recommend` takes any). Known users of als and popularity are scored `BLOCK` at a time
        with no per-user call: see `_block_top`. item_item users and unknown users go one by
        one (the fallback slate of each k is computed once)."""
        import numpy as np

        if k < 1:
            raise ValueError(f"k is {k}; it must be at least 1")
        if self.kind not in ("als", "popularity"):
            return [self.recommend(user, k, exclude_seen=exclude_seen) for user in users]
        slates: list[Slate | None] = [None] * len(users)
        known: list[tuple[int, int]] = []
        for i, user in enumerate(users):
            row = self._user_index.get(plain_id(user))
            if row is None:
                slates[i] = self.recommend(user, k, exclude_seen=exclude_seen)
            else:
                known.append((i, row))
        for start in range(0, len(known), BLOCK):
            block = known[start:start + BLOCK]
            rows = np.fromiter((row for _, row in block), dtype="int64", count=len(block))
            counts, items, values = self._block_top(rows, k, exclude_seen)
            ends = np.cumsum(counts).tolist()
            items, values = self.item_ids[items].tolist(), values.tolist()
            begin = 0
            for (i, _), end in zip(block, ends, strict=True):
                slates[i] = Slate(zip(items[begin:end], values[begin:end], strict=True))
                begin = end
        return slates  # type: ignore[return-value]

    def _block_top(self, rows: Any, k: int, exclude_seen: bool) -> tuple[Any, Any, Any]:
        """The top k of each known user in `rows`: (items per user, item columns, scores as
        float64), users in order, each best first and equal scores in item order.

        The scores are one matrix product (als, float32 like `recommend`'s) or copies of the
        popularity. No full sort and no argpartition over the catalogue: the items are cut
        into groups of `CHUNK`, the best of each group is taken (a reduction), the k-th largest
        of those maxima bounds each user's k-th best from below (they are k distinct scores),
        and only the scores at or above it in the groups that reach it, a few dozen per user,
        are sorted."""
        import numpy as np

        indptr, indices = self.arrays["history_indptr"], self.arrays["history_indices"]
        if self.kind == "als":
            scores = self.arrays["user_factors"][rows] @ self.arrays["item_factors"].T
        else:
            scores = np.tile(self.popularity, (len(rows), 1))
        if exclude_seen:
            lengths = indptr[rows + 1] - indptr[rows]
            at = np.repeat(indptr[rows] - np.cumsum(lengths) + lengths, lengths) \
                + np.arange(lengths.sum())
            scores[np.repeat(np.arange(len(rows)), lengths), indices[at]] = -np.inf
        n = scores.shape[1]
        width = min(k, n)
        groups = n // CHUNK             # group g: columns g, g + groups, g + 2 groups, ...
        whole = groups * CHUNK          # (strided: a reduction over contiguous rows is fast)
        if groups and width <= groups:
            maxima = scores[:, :whole].reshape(len(rows), CHUNK, groups).max(axis=1)
            if whole < n:               # the rest of the columns: one more group
                maxima = np.concatenate([maxima, scores[:, whole:].max(axis=1, keepdims=True)],
                                        axis=1)
            last = maxima.shape[1] - width
            bound = np.partition(maxima, last, axis=1)[:, last]
            # only the groups whose best reaches the bound can hold a user's top k
            owner, group = np.nonzero(maxima >= bound[:, None])
            offsets = np.arange(CHUNK)
            columns = np.where((group < groups)[:, None], group[:, None] + groups * offsets,
                               whole + offsets)
            inside = columns < n
            columns = np.minimum(columns, n - 1)
            values = scores[owner[:, None], columns]
            wanted = inside & (values >= bound[owner][:, None])
            user = np.broadcast_to(owner[:, None], columns.shape)[wanted]
            column, value = columns[wanted], values[wanted]
        else:
            user, column = np.divmod(np.arange(scores.size), n)
            value = scores[user, column]
        order = np.lexsort((column, -value, user))   # by user, best first, then item order
        user, column, value = user[order], column[order], value[order]
        first = np.searchsorted(user, np.arange(len(rows)))
        keep = (np.arange(len(user)) - first[user] < width) & np.isfinite(value)
        user, column, value = user[keep], column[keep], value[keep]
        return np.bincount(user, minlength=len(rows)), column, value.astype("float64")

    def __repr__(self) -> str:
        return (f"Recommender({self.kind!r}, users={len(self.user_ids)}, "
                f"items={len(self.item_ids)})")


def _storable(ids: Any) -> Any:
    """Ids as an array numpy saves without pickle: numbers stay numbers, the rest is text."""
    import numpy as np

    ids = np.asarray(ids)
    if ids.dtype.kind in "iufbU":
        return ids
    return ids.astype(str)


def _item_similarity(matrix: Any, neighbours: int) -> dict[str, Any]:
    """Cosine similarity between items' user vectors (binary co-occurrence), keeping the
    `neighbours` most similar other items of each item."""
    import numpy as np
    import scipy.sparse as sp

    binary = matrix.copy().tocsc()
    binary.data[:] = 1.0
    norms = np.sqrt(np.asarray(binary.multiply(binary).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    normalised = binary @ sp.diags(1.0 / norms)
    similarity = (normalised.T @ normalised).tocsr()
    similarity.setdiag(0.0)
    similarity.eliminate_zeros()
    rows_ptr, rows_idx, rows_val = [0], [], []
    for j in range(similarity.shape[0]):
        start, end = similarity.indptr[j], similarity.indptr[j + 1]
        idx, val = similarity.indices[start:end], similarity.data[start:end]
        if len(val) > neighbours:
            keep = np.argpartition(-val, neighbours - 1)[:neighbours]
            idx, val = idx[keep], val[keep]
        rows_idx.append(idx)
        rows_val.append(val)
        rows_ptr.append(rows_ptr[-1] + len(idx))
    return {"similarity_indptr": np.asarray(rows_ptr, dtype="int64"),
            "similarity_indices": (np.concatenate(rows_idx) if rows_idx else np.zeros(0))
            .astype("int64"),
            "similarity_data": (np.concatenate(rows_val) if rows_val else np.zeros(0))
            .astype("float32")}


def _als(matrix: Any, *, factors: int, iterations: int, regularization: float, alpha: float,
         seed: int, threads: int | None) -> dict[str, Any]:
    import numpy as np
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    # implicit parallelises ALS itself (num_threads); a BLAS pool inside it only competes
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, iterations=iterations,
                                        regularization=regularization, alpha=alpha,
                                        random_state=seed, num_threads=threads or 0,
                                        calculate_training_loss=False)
        model.fit(matrix.tocsr().astype("float32"), show_progress=False)
    return {"user_factors": np.asarray(model.user_factors, dtype="float32"),
            "item_factors": np.asarray(model.item_factors, dtype="float32")}
