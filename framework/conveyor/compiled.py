"""Compiled inference: a registered version scored by a compiled form of its model.

A plugin turns a trained model into a `CompiledModel` (conveyor-sklearn: an ONNX graph run by
onnxruntime) through the hook `conveyor_compile_model`. The core decides whether a version is
served by it:

* **Parity gate** (`check_parity`): on the version's own test rows, the rows its evaluation
  scored, the compiled model's labels must equal the Python model's, and its probabilities
  (classifiers) or values (regressors) must lie within `TOLERANCE` (1e-5, absolute) of them.
  The test rows are the stored output named `test` of the run that trained the version
  (`TEST_OUTPUT`; conveyor-sklearn's `sklearn.split` stage produces it); `test_rows` loads it.
* **Record** (`Registry.compiled`): one row per version in the store's `compiled_models` table:
  `served_by` ("onnx", "treelite" or "python"), `reason` (why "python"), the compiled
  artifact's `sha256` (an artifact of the store, hash-checked on load like any), `parity`
  (rows, labels_equal, max_abs_diff, tolerance) and the `converters` (package versions) that
  made it. Built once per version: at registration (`conveyor.register`, once the run has
  succeeded) or on first use (`api.load_model(..., compiled=True)`); two processes building
  it at once both check it, and the first to record it wins (the registry's write lock).
* **Falling back**: anything that stops the compiled form (no plugin compiles the model, a
  step without a converter, a parity failure, a compiled file whose hash no longer matches)
  makes the version served by its Python model, with the reason in `CompiledStatus.reason`
  (shown by `conveyor models list` and a server's `/metadata`). A compile failure never fails
  a run.
* **Upgrades**: the record keeps the converter and runtime versions it was checked with. When
  the installed runtime differs from the recorded one (an onnxruntime upgrade), the parity gate
  runs again on first use in a process before the compiled form serves; a failure there serves
  Python for that process with the reason. The artifact is not rebuilt automatically (a
  converter upgrade does not change a file already written); `compile_version(...,
  rebuild=True)` (`conveyor models compile NAME VERSION --rebuild`) rebuilds and records it.

Compiled models run with `inference_threads()` intra-op threads: `CONVEYOR_INFERENCE_THREADS`
when set, else `conveyor.threads`' budget (the cores other processes leave free); a serving
worker that runs one request per process wants 1 (`threads_for_loading(1)` around the load).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from conveyor.errors import ConveyorError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from conveyor.session import Session
    from conveyor.store.registry import ModelVersion

#: Probabilities (classifiers) or values (regressors) may differ by this much, absolute.
TOLERANCE = 1e-5
#: The stored output of a version's run that holds the rows its evaluation scored.
TEST_OUTPUT = "test"
#: The parity gate checks at most this many test rows (the first ones), to keep it quick.
MAX_PARITY_ROWS = 100_000
#: `served_by` of a version scored by its Python model.
PYTHON = "python"
THREADS_ENV = "CONVEYOR_INFERENCE_THREADS"

__all__ = ["MAX_PARITY_ROWS", "PYTHON", "TEST_OUTPUT", "TOLERANCE", "CompiledArtifact",
           "CompiledModel", "CompiledPrediction", "CompiledStatus", "NotCompilable",
           "check_parity", "columns_from_frame", "compile_version", "feature_kinds",
           "inference_threads", "load_compiled", "test_rows", "threads_for_loading"]


@runtime_checkable
class CompiledModel(Protocol):
    """A model in a compiled form, ready to score columns of numbers and text.

    `form` says what runs it ("onnx"), `features` the input columns in the order the model
    takes them, `kinds` each feature's kind ("number" or "text"), `classes` the class labels
    (plain Python values) of a classifier, None for a regressor."""

    form: str
    features: list[str]
    kinds: Mapping[str, str]
    classes: list[Any] | None

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> CompiledPrediction:
        """Score N rows given as one 1-D numpy array per feature, all of length N: numbers as
        float64 (NaN = missing), text as object arrays of str (None or "" = missing).
        Thread-safe."""
        ...


@dataclass(frozen=True)
class CompiledPrediction:
    """What a `CompiledModel` returns: `predictions` [N] (class labels of a classifier, values
    of a regressor) and, for a classifier, `probabilities` [N, len(classes)] float64 whose
    columns follow `classes`."""

    predictions: np.ndarray
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class CompiledStatus:
    """How a version is scored, and why: `served_by` "onnx"/"treelite" (its compiled form) or
    "python"; `reason` why "python" (None when compiled); `sha256` the compiled artifact's
    hash; `parity` the gate's figures ({"rows", "labels_equal", "max_abs_diff", "tolerance"};
    empty when not checked); `converters` the package versions that built and checked it."""

    served_by: str
    reason: str | None = None
    sha256: str | None = None
    parity: Mapping[str, Any] = field(default_factory=dict)
    converters: Mapping[str, str] = field(default_factory=dict)
    created_at: float | None = None

    @property
    def compiled(self) -> bool:
        return self.served_by != PYTHON

    def to_dict(self) -> dict[str, Any]:
        return {"served_by": self.served_by, "reason": self.reason, "sha256": self.sha256,
                "parity": dict(self.parity), "converters": dict(self.converters),
                "created_at": self.created_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompiledStatus:
        return cls(str(data.get("served_by") or PYTHON), data.get("reason"), data.get("sha256"),
                   dict(data.get("parity") or {}), dict(data.get("converters") or {}),
                   data.get("created_at"))

    def short(self) -> str:
        """One line for listings: `onnx`, or `python: <reason>`."""
        if self.compiled:
            return self.served_by
        return f"{PYTHON}: {self.reason}" if self.reason else PYTHON

    @classmethod
    def python(cls, reason: str, **kwargs: Any) -> CompiledStatus:
        return cls(PYTHON, reason, **kwargs)


@dataclass(frozen=True)
class CompiledArtifact:
    """What a `conveyor_compile_model` implementation returns: the compiled `model`, the name
    of the registered codec (`conveyor.Codec`) that stores it (its `handles` must accept it,
    its `load` gives back an equivalent `CompiledModel`), and the versions of the packages that
    converted it and run it (`converters`, e.g. {"skl2onnx": "1.20.0", "onnxruntime":
    "1.32.0"}; the key `runtime` names the one whose upgrade re-checks parity)."""

    model: CompiledModel
    codec: str
    converters: Mapping[str, str] = field(default_factory=dict)


class NotCompilable(ConveyorError):
    """Raised by a `conveyor_compile_model` implementation for a model it knows but cannot
    compile; the message is the reason recorded (e.g. "no ONNX converter for step 'x'
    (MyStep)"). The version is then served by its Python model."""


# --- threads ------------------------------------------------------------------------------------

_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar("inference_threads",
                                                                      default=None)


def inference_threads() -> int:
    """The intra-op threads a compiled model loaded now runs with: `threads_for_loading`'s
    number, else `CONVEYOR_INFERENCE_THREADS`, else the cores other processes leave free
    (`conveyor.threads.choose`, capped by OMP_NUM_THREADS)."""
    chosen = _THREADS.get()
    if chosen is not None:
        return chosen
    from conveyor.threads import choose, parse_threads

    setting = parse_threads(os.environ.get(THREADS_ENV) or None, THREADS_ENV)
    if isinstance(setting, int):
        return setting
    return choose(None, None, "inference").threads


@contextlib.contextmanager
def threads_for_loading(threads: int | None) -> Iterator[None]:
    """Compiled models loaded inside the block run with `threads` intra-op threads (None: the
    default of `inference_threads`)."""
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a whole number >= 1, not {threads!r}")
    token = _THREADS.set(threads)
    try:
        yield
    finally:
        _THREADS.reset(token)


# --- columns and the parity gate ---------------------------------------------------------------


def feature_kinds(contract: Any) -> tuple[list[str], dict[str, str]]:
    """(features, kinds) from a `conveyor.ModelContract`: "number" for numeric and boolean
    dtypes, "text" for anything else; ([], {}) without a contract."""
    if contract is None:
        return [], {}
    features = [f.name for f in contract.features]
    kinds = {f.name: "number" if _numeric_dtype(f.dtype) else "text" for f in contract.features}
    return features, kinds


def _numeric_dtype(dtype: str) -> bool:
    name = dtype.lower()
    return name.startswith(("int", "uint", "float", "bool")) or name in ("double",)


def columns_from_frame(frame: Any, features: Sequence[str], kinds: Mapping[str, str]
                       ) -> dict[str, np.ndarray]:
    """A DataFrame's features as `CompiledModel.predict_columns` takes them: numbers as
    float64 with NaN for missing, text as object arrays of str with None for missing."""
    import numpy as np

    columns: dict[str, np.ndarray] = {}
    for name in features:
        series = frame[name]
        if kinds.get(name) == "text":
            values = series.astype(object).to_numpy()
            columns[name] = np.array([None if _missing(v) else str(v) for v in values],
                                     dtype=object)
        else:
            columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return columns


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def check_parity(compiled: CompiledModel, python_model: Any, frame: Any, *,
                 tolerance: float = TOLERANCE) -> tuple[dict[str, Any], str | None]:
    """The compiled model against the Python model (`predict`, and `predict_proba` for a
    classifier) on `frame`'s rows: (parity figures, failure or None). Passes when every label
    is identical and every probability (classifiers) or value (regressors) lies within
    `tolerance` absolute."""
    import numpy as np

    frame = frame.iloc[:MAX_PARITY_ROWS]
    features = list(compiled.features)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        return {}, f"the test rows lack the model's features {', '.join(missing[:5])}"
    rows = frame[features]
    result = compiled.predict_columns(columns_from_frame(rows, features, compiled.kinds))
    from conveyor.threads import limited

    # The Python model's native pools sized to the free cores, as a stage's are: OpenMP
    # threads waiting at a barrier for a busy core make a small predict take seconds.
    with limited(inference_threads()):
        expected = np.asarray(python_model.predict(rows))
        proba = np.asarray(python_model.predict_proba(rows), dtype=np.float64) \
            if compiled.classes is not None and result.probabilities is not None and \
            hasattr(python_model, "predict_proba") else None
    got = np.asarray(result.predictions)
    parity: dict[str, Any] = {"rows": len(rows), "tolerance": tolerance}
    if got.shape != expected.shape:
        return parity, (f"parity failed: {got.shape[0] if got.ndim else 0} predictions for "
                        f"{len(rows)} rows")
    if compiled.classes is not None:
        differ = int(np.sum(np.asarray([a != b for a, b in
                                        zip(got.tolist(), expected.tolist(), strict=True)])))
        parity["labels_equal"] = differ == 0
        gap = 0.0
        if proba is not None:
            gap = _max_gap(np.asarray(result.probabilities, dtype=np.float64), proba)
        parity["max_abs_diff"] = gap
        if differ:
            return parity, (f"parity failed: {differ} of {len(rows)} labels differ "
                            f"(max probability difference {gap:.3g})")
        kind = "probability"
    else:
        parity["labels_equal"] = True
        gap = _max_gap(got.astype(np.float64), expected.astype(np.float64))
        parity["max_abs_diff"] = gap
        kind = "value"
    if not gap <= tolerance:  # NaN fails too
        return parity, (f"parity failed: max {kind} difference {gap:.3g} > {tolerance:g} "
                        f"on {len(rows)} test rows")
    return parity, None


def _max_gap(a: Any, b: Any) -> float:
    import numpy as np

    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    return float(np.nanmax(np.where(np.isnan(diff), np.inf, diff)))


def test_rows(session: Session, run_id: str) -> Any:
    """The rows the version's evaluation scored: the stored output `test` of the run that
    trained it (`api.load_output`), or None when the run stored none."""
    from conveyor import api

    try:
        return api.load_output(session, run_id, TEST_OUTPUT)
    except UsageError:
        return None


# --- building, storing, loading -----------------------------------------------------------------


def compile_version(session: Session, record: ModelVersion, *, model: Any = None,
                    contract: Any = None, rebuild: bool = False, rows: Any = None,
                    log: Any = None) -> tuple[CompiledStatus, CompiledModel | None]:
    """The compiled form of a registered version and its status, built, checked and recorded
    when the version has no record yet (or `rebuild`); the recorded one loaded otherwise.
    `model` is the version's Python model (loaded when None), `contract` its
    `conveyor.ModelContract` (read when None), `rows` the test rows parity is checked on (the
    run's stored `test` output when None). Never raises for a model that cannot be
    compiled: the status says why it is served by Python."""
    from conveyor.store import Registry

    store = session.store()
    try:
        registry = Registry(store)
        if not rebuild:
            status = registry.compiled(record.name, record.version)
            if status is not None:
                return _use_recorded(session, store, record, status, model)
        if contract is None:
            contract = registry.contract(record.name, record.version)
        if model is None:
            model = _python_model(session, store, record)
        try:
            status, compiled = _build(session, store, record, model, contract, rows, log)
            recorded = registry.record_compiled(record.name, record.version, status,
                                                replace=rebuild)
        except ConveyorError as exc:  # the store failed us: Python serves, nothing recorded
            return CompiledStatus.python(f"compiling failed: {_first_line(exc.message)}"), None
        if recorded != status:  # another process recorded it first: use theirs
            return _use_recorded(session, store, record, recorded, model)
        return status, compiled
    finally:
        store.close()


def load_compiled(session: Session, status: CompiledStatus) -> CompiledModel:
    """The compiled model a status records, loaded by its codec after its sha256 check
    (`StoreError` for a missing or altered file)."""
    from conveyor.store import Registry

    store = session.store()
    try:
        ref = Registry(store).compiled_artifact(str(status.sha256))
        if ref is None:
            raise UsageError(f"the compiled artifact {str(status.sha256)[:12]} is not in the "
                             "store's artifacts")
        codec = session.codec(ref.codec)
        if codec is None:
            raise UsageError(f"the compiled artifact was stored with codec '{ref.codec}', "
                             "which no installed plugin provides")
        return store.artifacts.load(ref, codec)
    finally:
        store.close()


def _python_model(session: Session, store: Any, record: ModelVersion) -> Any:
    from conveyor.store import ArtifactRef

    ref = ArtifactRef.from_dict(record.artifact)
    codec = session.codec(ref.codec)
    if codec is None:
        raise UsageError(f"model '{record.name}' v{record.version} was stored with codec "
                         f"'{ref.codec}', which no installed plugin provides")
    return store.artifacts.load(ref, codec)


def _use_recorded(session: Session, store: Any, record: ModelVersion, status: CompiledStatus,
                  model: Any) -> tuple[CompiledStatus, CompiledModel | None]:
    if not status.compiled:
        return status, None
    try:
        compiled = load_compiled(session, status)
    except ConveyorError as exc:
        return CompiledStatus.python(f"compiled artifact unusable: {exc.message}",
                                     parity=status.parity, converters=status.converters), None
    runtime = status.converters.get("runtime")
    installed = _runtime_version(runtime)
    if runtime and installed and status.converters.get(runtime) != installed:
        # Checked under another runtime version: check again before serving with this one.
        if model is None:
            model = _python_model(session, store, record)
        rows = test_rows(session, record.run_id)
        if rows is None:
            return CompiledStatus.python(f"{runtime} is now {installed} (checked with "
                                         f"{status.converters.get(runtime)}) and the test rows "
                                         "are gone", converters=status.converters), None
        try:
            parity, failure = check_parity(compiled, model, rows)
        except Exception as exc:  # never serve unchecked numbers
            parity, failure = {}, f"parity check failed: {type(exc).__name__}: {exc}"
        if failure:
            return CompiledStatus.python(f"{failure} under {runtime} {installed}", parity=parity,
                                         converters=status.converters), None
    return status, compiled


def _runtime_version(package: str | None) -> str | None:
    if not package:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _build(session: Session, store: Any, record: ModelVersion, model: Any, contract: Any,
           rows: Any, log: Any) -> tuple[CompiledStatus, CompiledModel | None]:
    from conveyor import __version__

    say = log or (lambda message: None)
    features, kinds = feature_kinds(contract)
    now = time.time()
    try:
        artifact = session.host.hook.conveyor_compile_model(model=model, features=features,
                                                            kinds=kinds)
    except NotCompilable as exc:
        return CompiledStatus.python(exc.message, created_at=now), None
    except ConveyorError as exc:
        return CompiledStatus.python(f"compiling failed: {_first_line(exc.message)}",
                                     created_at=now), None
    except Exception as exc:  # a plugin's bug must not stop serving: Python serves instead
        return CompiledStatus.python(f"compiling failed: {type(exc).__name__}: "
                                     f"{_first_line(str(exc))}", created_at=now), None
    if artifact is None:
        return CompiledStatus.python(f"no installed plugin compiles a {type(model).__name__}",
                                     created_at=now), None
    converters = {"conveyor": __version__, **dict(artifact.converters)}
    compiled = artifact.model
    if rows is None:
        rows = test_rows(session, record.run_id)
    if rows is None:
        return CompiledStatus.python(f"its run {record.run_id} stored no '{TEST_OUTPUT}' rows "
                                     "to check parity on", converters=converters,
                                     created_at=now), None
    try:
        parity, failure = check_parity(compiled, model, rows)
    except Exception as exc:
        return CompiledStatus.python(f"parity check failed: {type(exc).__name__}: "
                                     f"{_first_line(str(exc))}", converters=converters,
                                     created_at=now), None
    if failure:
        return CompiledStatus.python(failure, parity=parity, converters=converters,
                                     created_at=now), None
    codec = session.codec(artifact.codec)
    if codec is None:
        return CompiledStatus.python(f"no installed plugin provides the codec "
                                     f"'{artifact.codec}'", parity=parity,
                                     converters=converters, created_at=now), None
    ref = store.artifacts.put(compiled, codec)
    say(f"{record.name} v{record.version} compiled to {compiled.form} "
        f"(parity on {parity.get('rows')} test rows, max difference "
        f"{parity.get('max_abs_diff', 0):.2g})")
    return CompiledStatus(compiled.form, None, ref.sha256, parity, converters, now), compiled


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
