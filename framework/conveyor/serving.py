"""What a server needs from a model that recommends: the `RecommendingModel` protocol.

A server (conveyor-bentoml's `conveyor serve`) must not import the plugin that trained the
model, so it recognises a recommender by this protocol alone (`isinstance(model,
RecommendingModel)`, a structural check) and calls only what is listed here. A recommender
plugin's model class satisfies it without subclassing anything (conveyor-recsys's
`conveyor_recsys.models.Recommender` does).

Slates served are logged in the prediction log (`conveyor.predictions`), one row per slate.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

__all__ = ["RecommendedSlate", "RecommendingModel", "is_recommender", "require_not_recommender"]


@runtime_checkable
class RecommendedSlate(Protocol):
    """A sequence of `(item_id, score)` pairs, best first, at most the `k` asked for: fewer
    when the catalogue holds fewer items the user may get. `fallback` is True when the user
    was unknown to the model and the slate is its popularity fallback.

    Item ids are whole numbers or text (numpy scalars are made plain with `.item()`; any
    other id is a server error), scores finite floats (a server answers a NaN or infinite
    score as null)."""

    fallback: bool

    def __len__(self) -> int: ...

    def __iter__(self) -> Any: ...


@runtime_checkable
class RecommendingModel(Protocol):
    """A trained model that answers "the top k items for this user".

    `user_id_type` is the type of the user ids the model was trained on (`int` or `str`; any
    other value: ids are taken as they come). A server refuses an id of the other type with
    a 400 rather than answer a fallback for what is most likely the client's mistake.
    `item_count` is the catalogue's size, `user_count` the users the model knows.

    Optional: `slow_recommend` (a bool, False when absent) says `recommend` takes long enough
    (milliseconds, e.g. a model predict per call) that a server calls it in a worker thread
    rather than on its event loop; a fast model (microseconds) is called on the loop, where a
    thread hop would cost more than the slate."""

    item_count: int
    user_count: int
    user_id_type: type

    def recommend(self, user_id: Hashable, k: int = 10,
                  exclude_seen: bool = True) -> RecommendedSlate:
        """The top `k` items for `user_id` (k >= 1), leaving out what the user interacted with
        in training when `exclude_seen`; an unknown user gets the fallback, flagged. Returns a
        `RecommendedSlate`."""
        ...


def is_recommender(model: Any) -> bool:
    """Whether `model` satisfies `RecommendingModel` (what a server checks once per load)."""
    return isinstance(model, RecommendingModel)


def require_not_recommender(loaded: Any, *, command: str, does: str, instead: str) -> None:
    """Stop a command that works on rows of features when `loaded` (a
    `conveyor.api.LoadedModel`) holds a recommender, which answers slates per user instead:
    a UsageError (exit 2) "model 'NAME' vN is a recommender: `command` does", with `instead`
    (what to run for a recommender) as its hint. Call it before anything is read or recorded.
    Returns None for any other model."""
    from conveyor.errors import UsageError

    if is_recommender(loaded.model):
        raise UsageError(f"model '{loaded.name}' v{loaded.number} is a recommender: `{command}` "
                         f"{does}", hint=instead)
