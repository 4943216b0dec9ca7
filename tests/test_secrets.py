"""Secrets in the open (issue 14, item 5): config values under secret-looking keys and
credentials in URLs were printed by `runs show --json`, stored in the run's params and config,
and repeated in error messages (`Value 'hunter2-SECRET' is not a valid bool`). They are now
redacted in everything a run records and every message, while the stages still get the
resolved values; `${oc.env:...}` values are recorded as the interpolation, never in clear.
(The UI's pages: plugins/ui/tests/test_ui_hardening.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _support import local_project
from conveyor.secrets import REDACTED, Redactor, is_secret_key, redact_url_credentials, scrub
from conveyor.testing import each_store, store_execute, store_rows, store_table_names

PASSWORD, URL_PASSWORD, ENV_TOKEN, CLI_PASSWORD, PIN = (
    "hunter2-SECRET", "pw-in-url-77", "tok-from-env-9876", "cli-pass-555", "4242-card-pin")
ALL_SECRETS = (PASSWORD, URL_PASSWORD, ENV_TOKEN, CLI_PASSWORD, PIN)

SECRET_STAGES = '''
import logging

import conveyor


def _use(ctx):
    s = ctx.settings
    (ctx.project_dir / "seen.json").write_text(__import__("json").dumps(dict(s)))
    ctx.log(f"connecting with {s['password']}")
    logging.getLogger("secretstages").warning("token is %s", s["token"])
    if (ctx.project_dir / "BREAK").exists():
        raise ValueError(f"login refused for {s['url']} with password {s['password']}")
    return {"value": {"n": 1}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("secret.use", _use))
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEYOR_TEST_API_TOKEN", ENV_TOKEN)
    project = local_project(tmp_path / "p", local=["secretstages"],
                            modules={"secretstages": SECRET_STAGES}, pipeline={
        "use": {"uses": "secret.use", "password": "${env.db.password}", "url": "${env.db.url}",
                "token": "${env.api_token}", "pin": "${env.card_pin}"}},
        extra={"env": {"db": {"password": PASSWORD,
                              "url": f"postgres://app:{URL_PASSWORD}@db.example/x"},
                       "api_token": "${oc.env:CONVEYOR_TEST_API_TOKEN}",
                       "card_pin": PIN,
                       "sort_key": "plain-visible", "monkey": "banana", "keys": ["a", "b"]},
               "security": {"redact_keys": [r"(.+_)?pin"]}})
    return project


def stored_bytes(project) -> bytes:
    """Everything the project keeps: its files (artifacts, SQLite's store) and every row of its
    store's tables, whichever backend holds them."""
    folder = project.path / ".conveyor"
    files = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    rows = [store_rows(project.path, f'SELECT * FROM "{table}"')
            for table in sorted(store_table_names(project.path))]
    return files + repr(rows).encode()


def assert_no_secret(text: str | bytes, *secrets: str) -> None:
    for secret in secrets or ALL_SECRETS:
        needle = secret.encode() if isinstance(text, bytes) else secret
        assert needle not in text, f"{secret!r} is in the clear"


@each_store
def test_records_and_runs_show_never_hold_secrets_but_the_stage_gets_them(project):
    done = project.run(f"env.db.password={CLI_PASSWORD}")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((project.path / "seen.json").read_text())
    assert seen["password"] == CLI_PASSWORD and seen["token"] == ENV_TOKEN
    assert seen["url"] == f"postgres://app:{URL_PASSWORD}@db.example/x" and seen["pin"] == PIN
    assert_no_secret(done.stdout + done.stderr)
    assert "connecting with ***" in done.stdout and "token is ***" in done.stderr

    assert_no_secret(stored_bytes(project))
    [run] = project.runs()
    shown = project.cli("runs", "show", run["id"], "--json")
    assert_no_secret(shown.stdout)
    record = json.loads(shown.stdout)
    env = record["config"]["env"]
    assert env["db"]["password"] == REDACTED and env["card_pin"] == REDACTED
    assert env["db"]["url"] == "postgres://app:***@db.example/x"
    assert env["api_token"] == "${oc.env:CONVEYOR_TEST_API_TOKEN}"  # reproducible, not clear
    assert (env["sort_key"], env["monkey"], env["keys"]) == ("plain-visible", "banana", ["a", "b"])
    assert record["overrides"] == ["env.db.password=***"]
    use = record["config"]["pipeline"]["use"]
    assert use["password"] == "${env.db.password}" and use["token"] == "${env.api_token}"
    assert_no_secret(project.cli("runs", "show", run["id"]).stdout)
    # conveyor.api (predict, monitor, reproduce read recorded configs through it) resolves the
    # recorded interpolations again, in memory
    from conveyor import api

    recorded = api.get_run(project.path, run["id"]).config
    assert recorded["env"]["api_token"] == ENV_TOKEN
    assert recorded["pipeline"]["use"]["password"] == REDACTED
    again = project.run("--force")
    assert again.returncode == 0, again.stderr
    compared = project.cli("runs", "compare", *[r["id"] for r in project.runs()], "--json")
    assert_no_secret(compared.stdout)
    # the two passwords differ, but both are recorded as *** : compare cannot tell them apart
    assert "env.db.password" not in json.loads(compared.stdout)["params"]


@each_store
def test_a_failing_stage_s_error_is_recorded_and_printed_without_the_secret(project):
    (project.path / "BREAK").touch()
    done = project.run()
    assert done.returncode == 1
    assert "login refused for postgres://app:***@db.example/x with password ***" in done.stderr
    assert_no_secret(done.stdout + done.stderr)
    assert_no_secret(stored_bytes(project))
    [run] = project.runs()
    assert_no_secret(project.cli("runs", "show", run["id"], "--json").stdout)


@pytest.mark.parametrize("overrides", [
    ["data.stratify=${env.db.password}"],      # Value 'hunter2-SECRET' is not a valid bool
    [f"data.stratify={PASSWORD}"],
    [f"seed={ENV_TOKEN}"],
    ["data.stratify=${env.api_token}"],
    [f"env.db.password={CLI_PASSWORD}", f"data.test_size={CLI_PASSWORD}"],
    [f"env.db.password={CLI_PASSWORD}", f"data.test_size=[{CLI_PASSWORD}"],  # Hydra's parser
    [f"+db.password={CLI_PASSWORD}", f"+db.password={CLI_PASSWORD}x"],
])
def test_error_messages_do_not_repeat_secret_values(project, overrides):
    done = project.run(*overrides)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error:" in done.stderr and "Traceback" not in done.stderr
    assert_no_secret(done.stdout + done.stderr)
    assert not (project.path / ".conveyor" / "store.db").exists() or project.runs() == []


def test_the_key_pattern_is_whole_segments_and_configurable():
    for key in ("password", "db.password", "db_password", "db.passwordHash", "apiKey",
                "api_key", "key", "access_token", "auth_token", "client_secret", "secrets.x",
                "credentials.user", "aws.secret_access_key", "private-key", "pwd", "AUTH"):
        assert is_secret_key(key), key
    for key in ("keys", "monkey", "sort_key", "primary_key", "max_tokens", "tokenizer",
                "keyboard", "passwords_policy_url", "model.params.max_depth", "monitor.key_column",
                "security.redact_keys", "secretary", "tokens"):
        assert not is_secret_key(key), key
    redactor = Redactor.for_config({"security": {"redact_keys": ["(.+_)?pin"],
                                                 "redact_builtin_keys": False},
                                    "card_pin": "1234", "password": "visible"})
    assert redactor.config({"card_pin": "1234", "password": "visible"}) == {
        "card_pin": REDACTED, "password": "visible"}


def test_url_credentials_anywhere_in_text():
    assert redact_url_credentials("postgres://app:s3cret@db/x and https://ghp_abc@github.com/o/r"
                                  ) == "postgres://app:***@db/x and https://***@github.com/o/r"
    assert redact_url_credentials("see https://example.com/a@b") == "see https://example.com/a@b"
    assert scrub("mailto-free text, user@example.com") == "mailto-free text, user@example.com"
    assert re.search("s3cret", scrub("s3://key:s3cret@bucket")) is None


@each_store
def test_a_run_recorded_before_redaction_is_shown_redacted(project):
    done = project.run()
    assert done.returncode == 0, done.stderr
    [run] = project.runs()
    [row] = store_rows(project.path, "SELECT config FROM runs")
    config = json.loads(row["config"])
    config["env"]["db"]["password"] = PASSWORD
    store_execute(project.path, "UPDATE runs SET config=:config, overrides=:overrides",
                  config=json.dumps(config),
                  overrides=json.dumps([f"env.db.password={PASSWORD}"]))
    assert store_execute(project.path, "UPDATE params SET value=:value "
                         "WHERE key='env.db.password'", value=json.dumps(PASSWORD)) == 1
    for args in (["runs", "show", run["id"], "--json"], ["runs", "show", run["id"]]):
        assert_no_secret(project.cli(*args).stdout, PASSWORD)
    Path(project.path / "unused").touch()


def test_a_database_url_keeps_its_user_name_and_loses_its_password():
    assert scrub("store.url postgresql+psycopg://conveyor@127.0.0.1:1/x cannot be connected to"
                 ) == "store.url postgresql+psycopg://conveyor@127.0.0.1:1/x cannot be connected to"
    assert scrub("dialect+driver://user@host:port/database") == \
        "dialect+driver://user@host:port/database"
    assert redact_url_credentials("postgresql://ml:pw-s3cret@db/x") == "postgresql://ml:***@db/x"
    assert redact_url_credentials("git+https://ghp_abc@github.com/o/r") == \
        "git+https://***@github.com/o/r"  # a token in any other URL is still redacted


def test_a_store_error_through_the_cli_names_the_database_user(tmp_path):
    from _support import local_project
    from conveyor.testing import free_port

    project = local_project(tmp_path / "p")
    result = project.cli("runs", "list",
                         f"store.url=postgresql+psycopg://conveyor@127.0.0.1:{free_port()}/x")
    assert result.returncode == 2, result.stderr
    assert "conveyor@127.0.0.1" in result.stderr
    result = project.cli("runs", "list", "store.url=notaurl")
    assert result.returncode == 2, result.stderr
    assert "dialect+driver://user@host" in result.stderr  # the explanation, as written
