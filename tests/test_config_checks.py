"""`ConfigSchema.check`: a plugin's own checks of its section (what types cannot say) stop
every command before anything runs, exit 2, naming the key and where it was set."""

from __future__ import annotations

from conveyor.testing import assert_usage_error

LOCAL_PLUGIN = '''
from dataclasses import dataclass

import conveyor


@dataclass
class Greeting:
    word: str = "hello"
    times: int = 1


def check(section, where):
    if not section.word.isalpha():
        raise conveyor.ConfigError(
            f"config key 'greeting.word'{where('greeting.word')}: {section.word!r} is not a word")
    if section.times > 100:
        raise ValueError("far too many")


@conveyor.hookimpl
def conveyor_config_schemas(register):
    register(conveyor.ConfigSchema("greeting", Greeting, check=check))


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("local.greet", lambda ctx: {"text": ctx.settings["text"]}))
'''


def test_a_section_check_stops_the_run_before_any_stage(conveyor_project) -> None:
    project = conveyor_project(
        "defaults: [conveyor/defaults, _self_]\nproject: checked\n"
        "plugins: {local: [greeting]}\n"
        "greeting:\n  word: 'hi there'\n"
        "pipeline:\n  greet: {uses: local.greet, text: '${greeting.word}'}\n",
        files={"greeting.py": LOCAL_PLUGIN})
    result = project.run()
    assert_usage_error(result, "greeting.word", "conveyor.yaml:5", "is not a word")
    assert project.last_run() is None  # nothing ran, nothing recorded

    result = project.run("greeting.word=7")
    assert_usage_error(result, "greeting.word", "the command line ('greeting.word=7')")
    project.run("greeting.word=hi", check=True)

    # A check that breaks (not a ConfigError) is still a clear configuration error.
    result = project.cli("plan", "greeting.word=hi", "greeting.times=1000")
    assert_usage_error(result, "config section 'greeting' could not be checked", "far too many")
