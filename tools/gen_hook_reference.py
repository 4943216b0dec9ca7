"""Write docs/reference/hooks.md from the hookspecs' docstrings and signatures, and
docs/reference/stage-types.md from the stage types the built-in plugins register.

    python tools/gen_hook_reference.py            # (re)write the pages
    python tools/gen_hook_reference.py --check    # exit 1 when a committed page is stale

Every function of `conveyor.hookspecs` carrying the hookspec marker is listed, in source order,
under the section comments of that module (`# --- Title ---`), so a new hookspec appears without
touching this script; its result rule is the docstring's "Result:"/"Cleanup:" line. The hooks'
argument types and the contribution dataclasses the extension hooks register follow.
`make docs` runs it; tests/test_plugin_kit.py fails when a page is stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import conveyor
from conveyor import contributions, hookspecs
from conveyor.markers import PROJECT_NAME
from conveyor.plugins import KNOWN_PROVIDERS, PluginHost

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "hooks.md"
STAGE_PAGE = PAGE.with_name("stage-types.md")
SECTION = re.compile(r"^# --- (.+?) -+$")
RULE = re.compile(r"^\s*((?:Result|Cleanup): .+)$", re.MULTILINE)


def markdown(docstring: str | None) -> str:
    """A docstring as Markdown: reStructuredText's ``literal`` becomes `literal`."""
    return inspect.cleandoc(docstring or "(undocumented)").replace("``", "`")


def hookspec_functions() -> list[tuple[str, Any]]:
    marker = f"{PROJECT_NAME}_spec"
    found = [(name, fn) for name, fn in vars(hookspecs).items()
             if inspect.isfunction(fn) and hasattr(fn, marker)]
    return sorted(found, key=lambda item: item[1].__code__.co_firstlineno)


def sections() -> list[tuple[int, str]]:
    lines = inspect.getsource(hookspecs).splitlines()
    return [(number, match.group(1)) for number, line in enumerate(lines, start=1)
            if (match := SECTION.match(line))]


def result_rule(name: str, fn: Any) -> str:
    """The hook's result rule: the one "Result: ..." or "Cleanup: ..." line of its docstring."""
    rules = RULE.findall(fn.__doc__ or "")
    if len(rules) != 1:
        raise SystemExit(f"{name}: its docstring must state its result rule in one line "
                         "starting 'Result:' or 'Cleanup:'")
    return rules[0]


def wrapping(name: str) -> str:
    text = ("allowed (`@conveyor.hookimpl(wrapper=True)`): `result = yield` runs the other "
            "implementations and gives their result or raises their exception; the wrapper "
            "may time, trace, retry, replace the result or raise")
    if name in hookspecs.UNGUARDED_HOOKS:
        return text + "; old-style `hookwrapper=True` is allowed here too"
    return text


def hook_entry(name: str, fn: Any) -> list[str]:
    signature = inspect.signature(fn)
    rule = result_rule(name, fn)
    arguments = ", ".join(f"`{p}`" for p in signature.parameters) or "none"
    # Annotations are strings (the module uses `from __future__ import annotations`).
    params = ", ".join(f"{p.name}: {p.annotation}" if p.annotation is not p.empty else p.name
                       for p in signature.parameters.values())
    returns = "" if signature.return_annotation is signature.empty \
        else f" -> {signature.return_annotation}"
    body = RULE.sub("", inspect.cleandoc(fn.__doc__ or "")).rstrip()
    return [
        f"## `{name}`", "",
        "```python", f"@conveyor.hookimpl\ndef {name}({params}){returns}: ...", "```", "",
        f"- **Arguments** (keyword; implement any subset): {arguments}",
        f"- **{rule.split(':', 1)[0]}**: {rule.split(':', 1)[1].strip()}",
        f"- **Wrapper**: {wrapping(name)}", "",
        markdown(body), "",
    ]


def argument_types() -> list[Any]:
    """The public types the hooks' arguments have, as `conveyor` exports them."""
    return [conveyor.RunInfo, conveyor.Stage, conveyor.PluginInfo, conveyor.Host]


def contribution_classes() -> list[type]:
    """The public dataclasses of `conveyor.contributions`, in source order."""
    found = [obj for name, obj in vars(contributions).items()
             if dataclasses.is_dataclass(obj) and obj.__module__ == contributions.__name__
             and name in vars(conveyor) and name != "Contributions"]
    return sorted(found, key=lambda cls: inspect.getsourcelines(cls)[1])


def contribution_entry(cls: type) -> list[str]:
    name = cls.__name__
    if not dataclasses.is_dataclass(cls):
        return [f"### `conveyor.{name}`", "", markdown(cls.__doc__), ""]
    rows = ["| field | type | default |", "|---|---|---|"]
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = f"`{field.default!r}`"
        elif field.default_factory is not dataclasses.MISSING:
            default = f"`{field.default_factory()!r}`"
        else:
            default = "required"
        kind = str(field.type).replace("|", "\\|")
        rows.append(f"| `{field.name}` | `{kind}` | {default} |")
    return [f"### `conveyor.{name}`", "", markdown(cls.__doc__), "", *rows, ""]


def render() -> str:
    specs = hookspec_functions()
    headers = sections()
    out = [
        "# Hook reference",
        "",
        "<!-- Generated by tools/gen_hook_reference.py from framework/conveyor/hookspecs.py "
        "and contributions.py: edit the docstrings there, then run `make docs`. -->",
        "",
        "The contract between Conveyor and its plugins, from `conveyor.hookspecs` (also "
        "`help(conveyor.hookspecs)`).",
        "",
        markdown(hookspecs.__doc__).split("\n", 1)[1].strip(),
        "",
        f"{len(specs)} hooks. A guide that builds a plugin step by step: "
        "[Writing a plugin](../writing-a-plugin.md).",
        "",
    ]
    index: list[str] = []
    body: list[str] = []
    current = None
    for name, fn in specs:
        line = fn.__code__.co_firstlineno
        title = next((t for number, t in reversed(headers) if number < line), "Hooks")
        if title != current:
            current = title
            index.append(f"- **{title}**:")
            body += [f"# {title}", ""]
        index[-1] += f" [`{name}`](#{name})"
        body += hook_entry(name, fn)
    out += [*index, "", *body, "# The hooks' argument types", ""]
    for cls in argument_types():
        out += contribution_entry(cls)
    out += ["`StageContext` (`context`) is described in [Writing a plugin]"
            "(../writing-a-plugin.md), `Alert` in `conveyor.alerts`.", "",
            "# What the extension hooks register", ""]
    for cls in contribution_classes():
        out += contribution_entry(cls)
    return "\n".join(out).rstrip() + "\n"


# The distributions whose stage types the page documents: Conveyor's own, never a third party
# that happens to be installed where the page is generated.
BUILT_IN = {"conveyor", *KNOWN_PROVIDERS.values()}


def render_stage_types() -> str:
    host = PluginHost().load()
    out = [
        "# Stage types",
        "",
        "<!-- Generated by tools/gen_hook_reference.py from the stage types the built-in "
        "plugins register: edit their StageType(...) registrations, then run `make docs`. -->",
        "",
        "The stage types Conveyor and its built-in plugins provide, with their settings and the "
        "outputs each produces (`StageType.outputs`): the names a stage that `needs:` one "
        "reads from `ctx.inputs`. A stage type's name starts with its plugin's prefix (the "
        "entry point's name; `conveyor.` for the core). `conveyor plugins list --json` shows "
        "the same for every installed plugin.",
        "",
    ]
    rows = []
    for name, stage_type in sorted(host.stage_types.items()):
        info = host.provider("stage type", name)
        if info is None or info.distribution not in BUILT_IN:
            continue
        rows.append((name, stage_type, info))
    out += ["| stage type | distribution | what it does |", "|---|---|---|"]
    out += [f"| [`{n}`](#{n.replace('.', '')}) | {i.distribution} | {t.description} |"
            for n, t, i in rows]
    out.append("")
    for name, stage_type, info in rows:
        out += [f"## `{name}`", "", f"{stage_type.description} ({info.distribution}).", ""]
        out += ["**Outputs**:", ""]
        if stage_type.outputs:
            for output, text in stage_type.outputs.items():
                kept = " *(in memory only, not stored)*" \
                    if output in stage_type.ephemeral_outputs else ""
                out.append(f"- `{output}`: {text}{kept}")
        else:
            out.append("- (not declared)")
        out.append("")
        if stage_type.settings_schema is not None:
            out += ["**Settings** (`pipeline.<stage>.<setting>`):", "",
                    "| setting | type | default |", "|---|---|---|"]
            for field in dataclasses.fields(stage_type.settings_schema):
                if field.default is not dataclasses.MISSING:
                    default = f"`{field.default!r}`"
                elif field.default_factory is not dataclasses.MISSING:
                    default = f"`{field.default_factory()!r}`"
                else:
                    default = "required"
                kind = str(field.type).replace("|", "\\|")
                out.append(f"| `{field.name}` | `{kind}` | {default} |")
            out.append("")
        extras = []
        if stage_type.input_files is not None:
            extras.append("reads data files whose content enters its fingerprint")
        if stage_type.row_transform is not None:
            extras.append("a row transform (part of the model's inference path)")
        if extras:
            out += ["It " + "; ".join(extras) + ".", ""]
    return "\n".join(out).rstrip() + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".md.tmp")
    staging.write_text(text)
    staging.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write: exit 1 if a committed page differs")
    parser.add_argument("--output", type=Path, default=PAGE, help="the hook reference page")
    parser.add_argument("--stage-types-output", type=Path, default=STAGE_PAGE,
                        help="the stage types page")
    args = parser.parse_args(argv)
    pages = [(args.output, render()), (args.stage_types_output, render_stage_types())]
    if args.check:
        stale = [path for path, text in pages
                 if (path.read_text() if path.exists() else "") != text]
        for path in stale:
            print(f"{path} is stale: run `make docs` (python tools/gen_hook_reference.py)",
                  file=sys.stderr)
        return 1 if stale else 0
    for path, text in pages:
        _write(path, text)
    print(f"wrote {args.output} ({pages[0][1].count(chr(10) + '## `')} hooks) and "
          f"{args.stage_types_output} ({pages[1][1].count(chr(10) + '## `')} stage types)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
