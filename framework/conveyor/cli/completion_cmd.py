"""`conveyor completion bash`: tab completion for commands, and through Hydra's own completion
for `run` and `plan` overrides (config keys, group choices such as model=random_forest).

    eval "$(conveyor completion bash)"      # add to ~/.bashrc
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from conveyor.session import Session

SCRIPT = r"""
_conveyor_complete() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local words=($line)
    local cur="${line##* }"
    if (( ${#words[@]} <= 1 )) || [[ ${#words[@]} == 2 && -n "$cur" ]]; then
        COMPREPLY=($(compgen -W "%(commands)s" -- "$cur"))
    elif [[ "${words[1]}" == "run" || "${words[1]}" == "plan" ]]; then
        local choices
        choices=$(COMP_LINE="$line" conveyor run -sc query=bash 2>/dev/null)
        COMPREPLY=($(compgen -W "$choices" -- "$cur"))
        # bash splits words at '=': hand back only what follows the last '='
        if [[ "$cur" == *=* ]]; then COMPREPLY=("${COMPREPLY[@]#${cur%%=*}=}"); fi
        [[ ${#COMPREPLY[@]} == 1 && "${COMPREPLY[0]}" == *[=.] ]] && compopt -o nospace
    else
        COMPREPLY=($(compgen -W "%(actions)s --json --help" -- "$cur"))
    fi
}
complete -F _conveyor_complete conveyor
"""


def configure(commands: Any) -> None:
    completion = commands.add_parser(
        "completion", help="print a shell completion script: eval \"$(conveyor completion bash)\"")
    completion.add_argument("shell", choices=["bash"], help="the shell (bash)")
    completion.set_defaults(handler=print_script)


def print_script(args: argparse.Namespace, app: Session) -> int:
    from conveyor.cli import build_parser

    parser = build_parser(app.host)
    commands = sorted(parser._subparsers._group_actions[0].choices)  # argparse keeps them here
    print(SCRIPT % {"commands": " ".join(commands),
                    "actions": "list show compare promote rollback history"})
    return 0


def rewrite_query_line(search_path: str) -> None:
    """Hydra completes the words after the program name: drop `conveyor run` and put the
    plugins' config folders first, so group choices such as model=... are offered too."""
    words = os.environ.get("COMP_LINE", "").split(" ")
    rest = " ".join(words[2:]) if len(words) > 2 else ""
    os.environ["COMP_LINE"] = f"conveyor {search_path} {rest}"
