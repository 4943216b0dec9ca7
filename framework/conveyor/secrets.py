"""Secrets in a config: which values are secret, and how they are kept out of records and text.

A value is secret when
- its key, or a section above it, is named like a secret: each dotted segment is normalised
  (camelCase -> snake_case, '-' -> '_', lower case) and matched whole against the patterns
  below (`BUILTIN_SECRET_KEYS`, unless `security.redact_builtin_keys: false`) and the
  project's own `security.redact_keys` (regular expressions, each matched against a whole
  segment). So `password`, `db_password`, `apiKey`, `access_token`, `client_secret`, `key` and
  `api_key` are secret; `keys`, `monkey`, `sort_key`, `max_tokens` and `tokenizer` are not;
- or it comes from an environment variable (`${oc.env:NAME}` anywhere in its YAML value);
- or it is a copy of a secret value (an interpolation such as `${db.password}`).

Credentials inside URLs (`scheme://user:PASSWORD@host`, `scheme://TOKEN@host`) are redacted in
every string, whatever its key; in a database URL (`postgresql+psycopg://user@host`) a user
without a password is a user name and is kept (`DATABASE_SCHEME`).

What a run records (the stored config and params, the overrides, stage settings, errors) is
the redacted copy: a secret whose YAML value is an interpolation is stored as that
interpolation (`${oc.env:DB_PASSWORD}`, never its value), so `conveyor reproduce` resolves it
again from the environment; any other secret is stored as `REDACTED`. The resolved values still
reach the stages: only records and text are redacted. Error messages and log records are
scrubbed of every secret value this process has seen (`remember`, `scrub`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REDACTED = "***"
BUILTIN_SECRET_KEYS: tuple[str, ...] = (
    r"(.+_)?(password|passwd|passphrase|secret|secrets|token|credential|credentials|apikey)"
    r"(_.+)?",
    r"((api|access|secret|private|signing|encryption|master|client|ssh|account|auth|license)_)?"
    r"key",
    r"pwd|auth|authorization|cookie|session_id",
)
MIN_SECRET_LENGTH = 4  # shorter values are not searched for in free text (too many false hits)
URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^\s/@:'\"]*)(?::(?P<password>[^\s/@'\"]*))?@")
# Database URLs: a user without a password is a user name, not a token.
DATABASE_SCHEME = re.compile(
    r"(?i)(postgres|postgresql|mysql|mariadb|sqlite|oracle|mssql|cockroachdb|dialect)"
    r"(\+[a-z0-9_]+)?://")
INTERPOLATION = re.compile(r"\$\{[^}]*\}")
ENV_REFERENCE = re.compile(r"\$\{oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_known: set[str] = set()


def _segment(name: str) -> str:
    return _CAMEL.sub("_", name).replace("-", "_").lower()


def compile_patterns(extra: Sequence[str] = (), *, builtin: bool = True) -> list[re.Pattern]:
    """The key patterns in force: the built-in ones (unless `builtin` is false) and `extra`."""
    return [re.compile(p, re.IGNORECASE) for p in (*(BUILTIN_SECRET_KEYS if builtin else ()),
                                                   *extra)]


def is_secret_key(dotted: str, patterns: Sequence[re.Pattern] | None = None) -> bool:
    """Whether a dotted config key (or a section above it) is named like a secret."""
    patterns = compile_patterns() if patterns is None else patterns
    return any(p.fullmatch(_segment(part)) for part in str(dotted).split(".") if part
               for p in patterns)


def redact_url_credentials(text: str) -> str:
    """`scheme://user:pw@host` -> `scheme://user:***@host`; `scheme://token@host` ->
    `scheme://***@host`, except in a database URL (`postgresql://`, SQLAlchemy's
    `dialect+driver://`): there it is a user name, which a store error must show."""
    def replace(match: re.Match) -> str:
        if match["password"] is not None:
            return f"{match['scheme']}{match['user']}:{REDACTED}@"
        if not match["user"] or DATABASE_SCHEME.fullmatch(match["scheme"]):
            return match[0]
        return f"{match['scheme']}{REDACTED}@"

    return URL_CREDENTIALS.sub(replace, text)


def remember(values: Iterable[Any]) -> None:
    """Secret values this process has seen: `scrub` removes them from any text."""
    for value in values:
        if value is None or isinstance(value, bool):
            continue
        text = str(value)
        if len(text) >= MIN_SECRET_LENGTH:
            _known.add(text)
        for match in URL_CREDENTIALS.finditer(text):
            if match["password"] and len(match["password"]) >= MIN_SECRET_LENGTH:
                _known.add(match["password"])


def scrub(text: Any, values: Iterable[str] = ()) -> Any:
    """`text` with URL credentials and every remembered (or given) secret value redacted;
    anything that is not a string is returned as it is."""
    if not isinstance(text, str) or not text:
        return text
    text = redact_url_credentials(text)
    for value in sorted({*_known, *values}, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def remember_overrides(overrides: Iterable[str]) -> None:
    """Values given on the command line for secret-looking keys (`db.password=...`), before
    anything parses them: a composition error must not repeat them."""
    patterns = compile_patterns()
    for override in overrides:
        key, sep, value = str(override).partition("=")
        if sep and is_secret_key(key.lstrip("+~"), patterns):
            remember([value.strip("'\"")])


def remember_raw(raw: Mapping[str, Any]) -> None:
    """Before a config is resolved (its errors quote values): the literal values under secret
    keys and the environment variables `${oc.env:NAME}` refers to."""
    patterns = compile_patterns()
    for key, value in _flatten(raw).items():
        if not isinstance(value, str):
            if is_secret_key(key, patterns) and value is not None:
                remember([value])
            continue
        for name in ENV_REFERENCE.findall(value):
            remember([os.environ.get(name)])
        if is_secret_key(key, patterns) and "${" not in value:
            remember([value])


def holds_literal_secret(raw: Mapping[str, Any]) -> bool:
    """Whether a config before resolution holds a secret in clear: a value under a secret key
    that is not a pure interpolation, or a URL with a literal password. (Such a config is not
    written to the composition cache.)"""
    extra, options = _security_patterns(raw)
    patterns = compile_patterns(extra, **options)
    for key, value in _flatten(raw).items():
        if value is None or value == "" or isinstance(value, bool):
            continue
        text = str(value)
        if is_secret_key(key, patterns) and INTERPOLATION.sub("", text).strip():
            return True
        if any(m["password"] and INTERPOLATION.sub("", m["password"])
               for m in URL_CREDENTIALS.finditer(text)):
            return True
    return False


def _security_patterns(data: Mapping[str, Any]) -> tuple[list[str], dict[str, bool]]:
    security = data.get("security") if isinstance(data.get("security"), Mapping) else {}
    extra = [str(p) for p in (security.get("redact_keys") or [])]
    return extra, {"builtin": security.get("redact_builtin_keys", True) is not False}


def remember_yaml_files(project_dir: Any, limit: int = 200) -> None:
    """The secrets of a project's own YAML files (`remember_raw` on each), for a config that
    could not be composed: its error may quote them. Best effort; hidden folders skipped."""
    from pathlib import Path

    import yaml

    root = Path(project_dir)
    files = [root / "conveyor.yaml", *sorted(p for p in root.glob("*/*.yaml")
                                             if not p.parts[-2].startswith("."))][:limit]
    for path in files:
        try:
            data = yaml.safe_load(path.read_text())
        except Exception:
            continue
        if isinstance(data, Mapping):
            remember_raw(data)


@dataclass(frozen=True)
class Redactor:
    """Redacts one resolved config (and text about it). `templates` holds, per secret key, the
    interpolation its YAML value was (stored instead of the value); `paths` the other secret
    keys; `values` the secret values themselves."""

    patterns: tuple[re.Pattern, ...] = ()
    paths: frozenset[str] = frozenset()
    templates: Mapping[str, str] = field(default_factory=dict)
    values: frozenset[str] = frozenset()

    @classmethod
    def for_config(cls, data: Mapping[str, Any], raw: Mapping[str, Any] | None = None
                   ) -> Redactor:
        """The redactor of a resolved config `data`; `raw` is the same config before its
        interpolations were resolved (to know what came from `${oc.env:...}`)."""
        extra, options = _security_patterns(data)
        patterns = tuple(compile_patterns(extra, **options))
        flat, flat_raw = _flatten(data), _flatten(raw or {})
        paths: set[str] = set()
        templates: dict[str, str] = {}
        for key, value in flat.items():
            template = flat_raw.get(key)
            from_env = isinstance(template, str) and "oc.env" in template
            if value is None or value == "" or not (from_env or is_secret_key(key, patterns)):
                continue
            paths.add(key)
            if _storable_template(key, template, patterns):
                templates[key] = scrub(template)
        values = {str(flat[k]) for k in paths
                  if not isinstance(flat[k], bool | dict | list)
                  and len(str(flat[k])) >= MIN_SECRET_LENGTH}
        # Copies of a secret under another name (`${db.password}`) are secret too.
        paths |= {k for k, v in flat.items() if isinstance(v, str) and v in values}
        for key in list(paths):
            template = flat_raw.get(key)
            if key not in templates and _storable_template(key, template, patterns):
                templates[key] = scrub(template)
        return cls(patterns, frozenset(paths), templates, frozenset(values))

    @classmethod
    def for_record(cls, config: Any) -> Redactor:
        """For showing a recorded config (written before redaction existed, perhaps): its
        secret keys by name, by its own `security` settings."""
        return cls.for_config(config if isinstance(config, Mapping) else {})

    def remember(self) -> None:
        remember(self.values)

    def is_secret(self, key: str) -> bool:
        return key in self.paths or is_secret_key(key, self.patterns)

    def value(self, key: str, value: Any) -> Any:
        """What is recorded for `key`'s resolved `value`."""
        if isinstance(value, Mapping):
            return {k: self.value(f"{key}.{k}" if key else str(k), v) for k, v in value.items()}
        if value is None or value == "" or not self.is_secret(key):
            if isinstance(value, list):
                return [self.value(key, v) for v in value]
            return self.text(value) if isinstance(value, str) else value
        if key not in self.templates and isinstance(value, str) and (
                value == REDACTED or INTERPOLATION.fullmatch(value)):
            return value  # recorded redacted already
        return self.templates.get(key, REDACTED)

    def config(self, data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """A redacted copy of `data` (a config, or the section at `prefix`)."""
        return {k: self.value(f"{prefix}.{k}" if prefix else str(k), v) for k, v in data.items()}

    def params(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of flattened params ({'a.b': value})."""
        return {k: self.value(k, v) for k, v in flat.items()}

    def overrides(self, overrides: Iterable[str]) -> list[str]:
        """Command-line overrides with secret values redacted (`db.password=***`)."""
        result = []
        for override in overrides:
            key, sep, _ = str(override).partition("=")
            if sep and self.is_secret(key.lstrip("+~")):
                result.append(f"{key}={REDACTED}")
            else:
                result.append(self.text(override))
        return result

    def text(self, text: Any) -> Any:
        """A message with every secret value and URL credential redacted."""
        return scrub(text, self.values)


def _storable_template(key: str, template: Any, patterns: Sequence[re.Pattern]) -> bool:
    """Whether a secret's YAML value, an interpolation, may be recorded instead of its value:
    under a secret-named key only a pure interpolation (no literal text that could be part of
    the secret); elsewhere (`url: postgres://app:${oc.env:PW}@db/x`) any, URL credentials
    redacted."""
    if not isinstance(template, str) or "${" not in template:
        return False
    if is_secret_key(key, patterns):
        return INTERPOLATION.sub("", template).strip() == ""
    return True


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif prefix:
        out[prefix] = data
    return out


class _ScrubbingFactory:
    """A log record factory that scrubs each record's message (installed once per process)."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return record


def scrub_logs() -> None:
    """Scrub every log record of this process (`scrub`), whichever library logs it."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _ScrubbingFactory):
        logging.setLogRecordFactory(_ScrubbingFactory(factory))
