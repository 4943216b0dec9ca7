"""The request bodies' types: /predict's, derived from the project's schema
(`conveyor_describe_schema`), and /recommend's (`recommend_request_type`).

A request is a JSON list of records. Each record is a TypedDict whose fields are the schema's
columns, typed strictly (a string is never taken for a number), with the schema's ranges and
allowed values as constraints, NaN and infinities refused, and unknown fields forbidden. It
is validated by pydantic-core while BentoML parses the body, so a bad record never reaches
the model: the 400 answer names the record, the field (`loc`) and the rule (`type`, `msg`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired

from conveyor.validation import FieldDescription, SchemaDescription
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

REQUEST_ID = "_conveyor_request_id"
_ids = itertools.count()
_prefix = f"{os.getpid():x}"


def new_request_id() -> str:
    """A request id unique in this server's life: `<pid in hex>-<counter in hex>`, as every
    answer of /predict and /recommend (and the prediction log) carries it."""
    return f"{_prefix}-{next(_ids):x}"


def recommend_request_type(max_k: int) -> type[BaseModel]:
    """POST /recommend's body: `{"user_id": ..., "k": 10, "exclude_seen": true}`, strictly
    typed (a string is never taken for a number, nor a number for a bool), unknown fields
    forbidden, k from 1 to `max_k` (serve.recommend.max_k). A 400 names the field (`loc`)."""

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        user_id: Annotated[Any, AfterValidator(_whole_number_or_text)]
        k: Annotated[int, Field(ge=1, le=max_k)] = 10
        exclude_seen: bool = True

    return RecommendRequest


JSON_KINDS = {bool: "true/false", float: "a number with a fraction", type(None): "null",
              list: "a list", dict: "an object"}


def _whole_number_or_text(value: Any) -> int | str:
    # one error naming the field, rather than pydantic's one per member of `int | str`
    if type(value) not in (int, str):
        raise PydanticCustomError("user_id_type", "user_id must be a whole number or text, "
                                  "not {kind}", {"kind": JSON_KINDS.get(type(value), "that")})
    return value


def request_type(description: SchemaDescription | None, features: list[str],
                 loaded_features: Callable[[], list[str] | None] | None = None) -> Any:
    """`list[Record]`, at least one record, each stamped with its request's id once valid.

    With no schema and no features, records are taken as they come: raw records for the
    model's row transforms, or the server started before a model could be loaded and knew no
    features; `loaded_features()` then gives the loaded model's (None: not to be checked)."""
    if description is None and not features:
        return Annotated[list[dict[str, Any]], Field(min_length=1),
                         AfterValidator(_stamp([], loaded_features))]
    if description is None:  # no data.schema: the model's own feature names, any JSON values
        fields: dict[str, Any] = {name: Any for name in features}
        record = TypedDict("Record", fields)  # type: ignore[misc]
        record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        return Annotated[list[record], Field(min_length=1), AfterValidator(_stamp([]))]
    fields = {f.name: _field_type(f) for f in description.fields}
    record = TypedDict("Record", fields)  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    unique = [f.name for f in description.fields if f.unique]
    return Annotated[list[record], Field(min_length=1), AfterValidator(_stamp(unique))]


def _field_type(spec: FieldDescription) -> Any:
    constraints: dict[str, Any] = {k: getattr(spec, k) for k in ("ge", "gt", "le", "lt")
                                   if getattr(spec, k) is not None}
    if spec.isin is not None:
        kind: Any = Literal[tuple(spec.isin)]  # type: ignore[valid-type]
    elif spec.dtype == "int":
        kind = Annotated[int, Field(strict=True, **constraints)]
    elif spec.dtype == "float":
        # strict float still takes a JSON integer (3 for 3.0), never a string
        kind = Annotated[float, Field(strict=True, allow_inf_nan=False, **constraints)]
    elif spec.dtype == "str":
        kind = Annotated[str, Field(strict=True)]
    elif spec.dtype == "bool":
        kind = Annotated[bool, Field(strict=True)]
    else:
        kind = Any
    if spec.nullable:
        kind = kind | None
    return kind if spec.required else NotRequired[kind]


def _stamp(unique: list[str], loaded_features: Callable[[], list[str] | None] | None = None
           ) -> Any:
    def check(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = loaded_features() if loaded_features is not None else None
        if names is not None:
            for index, record in enumerate(records):
                wrong = sorted(set(record) ^ set(names))
                if wrong:
                    raise PydanticCustomError(
                        "fields", "record {index}: field {field} is "
                        + ("unknown" if wrong[0] in record else "missing")
                        + " (the model's features: {features})",
                        {"index": index, "field": wrong[0], "features": ", ".join(names)})
        for name in unique:
            seen: set[Any] = set()
            for index, record in enumerate(records):
                value = record.get(name)
                if value is not None and value in seen:
                    raise PydanticCustomError(
                        "unique", "record {index}: {field} {value} repeats an earlier "
                        "record's (the schema's rule: unique)",
                        {"index": index, "field": name, "value": value})
                seen.add(value)
        request_id = new_request_id()
        for record in records:
            record[REQUEST_ID] = request_id
        return records

    return check
