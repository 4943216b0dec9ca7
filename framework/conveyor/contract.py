"""A model version's contract: what the model was trained and validated on, recorded with the
version so everything that uses the version reads it, never the project's current files.

The `conveyor.register` stage records a `ModelContract` with each version it registers, built
from the run's config and from the `contract` outputs of the stages the register stage depends
on (directly or not): the validate stage contributes the schema it validated against (its
content, `SchemaSnapshot`), the data source, target and id column; a training stage the
feature names and types it fitted on (`Feature`). Stages whose type declares
`StageType.row_transform` are recorded as the version's inference path (`RowTransform`).

    from conveyor import api
    contract = api.model_contract(project_dir, "churn", version=3)   # None for older versions
    schema = contract.schema_path(project_dir)   # the recorded schema, as a file to validate with

`predict`, `monitor` and `serve` validate and score with the contract of the version they act
on (`contract.data_config(config, project_dir)` puts it in a config's `data` section); a version
registered before contracts existed has none, and they fall back to its run's config.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Feature", "ModelContract", "RowTransform", "SchemaSnapshot"]

CONTRACTS_DIR = Path(".conveyor") / "contracts"


@dataclass(frozen=True)
class SchemaSnapshot:
    """A schema's content, as a validation plugin can read it back from a file.

    `text` is the schema itself (Pandera YAML, say), `suffix` the file suffix the plugin
    recognises it by (".yaml"). `origin` is the `data.schema` it was read from (None when it was
    inferred from the data). `describes` is the data file the schema says it was written for,
    when it says so (a schema inferred from a file records that file), `written_by` what wrote
    it ("conveyor init", "conveyor schema infer", "inferred by the run"), `columns` the columns it
    lists and `validator` the plugin and version that produced it.
    """

    text: str
    suffix: str
    origin: str | None = None
    describes: str | None = None
    written_by: str | None = None
    columns: tuple[str, ...] = ()
    validator: str = ""

    @property
    def inferred(self) -> bool:
        return self.origin is None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "suffix": self.suffix, "origin": self.origin,
                "describes": self.describes, "written_by": self.written_by,
                "columns": list(self.columns), "validator": self.validator,
                "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaSnapshot:
        return cls(text=str(data["text"]), suffix=str(data.get("suffix") or ".yaml"),
                   origin=data.get("origin"), describes=data.get("describes"),
                   written_by=data.get("written_by"),
                   columns=tuple(str(c) for c in data.get("columns") or ()),
                   validator=str(data.get("validator") or ""))

    def path(self, project_dir: Path) -> Path:
        """The snapshot as a file under `.conveyor/contracts/` (written once, by content)."""
        folder = Path(project_dir) / CONTRACTS_DIR
        path = folder / f"{self.sha256[:24]}{self.suffix}"
        if not path.is_file() or path.read_text() != self.text:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(self.text)
            os.replace(tmp, path)
        return path


@dataclass(frozen=True)
class Feature:
    """One input column of the model, with its type as the training data had it
    (a pandas dtype name: "int64", "float64", "object", "bool", ...)."""

    name: str
    dtype: str


@dataclass(frozen=True)
class RowTransform:
    """A stage of the training pipeline that transforms rows before training (its stage type
    declares `row_transform`): `stage` its name in the pipeline, `uses` its stage type,
    `settings` its resolved settings. Applied, in order, to raw records at inference: those with
    `before_schema` before the records are validated against the contract's schema (it was
    written for their output), the others after."""

    stage: str
    uses: str
    settings: dict[str, Any] = field(default_factory=dict)
    before_schema: bool = False  # upstream of the validation: the schema describes its output


@dataclass(frozen=True)
class ModelContract:
    """What a model version takes and was validated against (see the module's docstring).

    `schema` is None when the run had no schema and no validation plugin could infer one.
    `source` is the `data.source` the model was trained on. `transforms` is the inference path:
    the row transforms to apply to raw records before `features` are taken from them.
    `reference` names the stored outputs monitoring compares with (e.g. {"train": {...}}).
    """

    schema: SchemaSnapshot | None = None
    target: str | None = None
    id_column: str | None = None
    features: tuple[Feature, ...] = ()
    source: str | None = None
    transforms: tuple[RowTransform, ...] = ()
    reference: dict[str, Any] = field(default_factory=dict)
    #: the `data.schema` validated against when no plugin could write its content out
    #: (`conveyor_schema_snapshot`): then the file as it is now is all there is to go by
    schema_ref: str | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def schema_path(self, project_dir: Path) -> str | None:
        """The recorded schema as a file a validation plugin reads, relative to the project
        (`.conveyor/contracts/<sha256>.yaml`, as `data.schema` would name it), or None."""
        if self.schema is None:
            return self.schema_ref
        return self.schema.path(project_dir).relative_to(Path(project_dir)).as_posix()

    def data_config(self, config: Mapping[str, Any], project_dir: Path) -> dict[str, Any]:
        """`config` with its `data` section's schema, target and id column the contract's,
        for `conveyor.validation.validate_frame` and `describe_schema`."""
        data = dict(config.get("data") or {})
        data.update(schema=self.schema_path(project_dir), target=self.target,
                    id_column=self.id_column)
        return {**config, "data": data}

    def transform(self, frame: Any, stage_types: Mapping[str, Any], *,
                  before_schema: bool | None = None) -> Any:
        """`frame` (raw records) through the version's inference path: each recorded row
        transform, in order, by its installed stage type's `row_transform`. `before_schema`
        True applies only those the schema was written after, False only the others, None all.
        UsageError when a stage type of the path is not installed (or no longer transforms)."""
        from conveyor.errors import UsageError

        for step in self.transforms:
            if before_schema is not None and step.before_schema != before_schema:
                continue
            stage_type = stage_types.get(step.uses)
            apply = getattr(stage_type, "row_transform", None)
            if apply is None:
                raise UsageError(
                    f"this model's inference path applies stage '{step.stage}' ({step.uses}) to "
                    "every record, and " + ("no installed plugin provides that stage type"
                                            if stage_type is None else
                                            "that stage type no longer declares a row_transform"),
                    hint="install the plugin that provides it (the version records its settings: "
                         "removing the stage from the pipeline does not change this model)")
            frame = apply(frame, step.settings)
        return frame

    def to_dict(self) -> dict[str, Any]:
        return {"schema": None if self.schema is None else self.schema.to_dict(),
                "target": self.target, "id_column": self.id_column,
                "features": [{"name": f.name, "dtype": f.dtype} for f in self.features],
                "source": self.source,
                "transforms": [{"stage": t.stage, "uses": t.uses, "settings": t.settings,
                                "before_schema": t.before_schema} for t in self.transforms],
                "reference": dict(self.reference), "schema_ref": self.schema_ref}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelContract:
        schema = data.get("schema")
        return cls(
            schema=SchemaSnapshot.from_dict(schema) if schema else None,
            target=data.get("target"), id_column=data.get("id_column"),
            features=tuple(Feature(str(f["name"]), str(f.get("dtype") or ""))
                           for f in data.get("features") or ()),
            source=data.get("source"),
            transforms=tuple(RowTransform(str(t["stage"]), str(t["uses"]),
                                          dict(t.get("settings") or {}),
                                          bool(t.get("before_schema")))
                             for t in data.get("transforms") or ()),
            reference=dict(data.get("reference") or {}), schema_ref=data.get("schema_ref"))


def assemble(config: Mapping[str, Any], parts: list[Mapping[str, Any]],
             transforms: list[RowTransform], reference: Mapping[str, Any]) -> ModelContract:
    """The contract of a run: its `data` section, overridden by the stages' `contract` outputs
    in pipeline order (a later stage's keys win)."""
    data = config.get("data") or {}
    merged: dict[str, Any] = {"target": data.get("target"), "id_column": data.get("id_column"),
                              "source": data.get("source")}
    for part in parts:
        if isinstance(part, Mapping):
            merged.update({k: v for k, v in part.items()
                           if k in ("schema", "target", "id_column", "features", "source",
                                    "schema_ref")})
    merged["transforms"] = [{"stage": t.stage, "uses": t.uses, "settings": t.settings,
                             "before_schema": t.before_schema} for t in transforms]
    merged["reference"] = dict(reference)
    return ModelContract.from_dict(merged)
