"""`conveyor init NAME --template T`: a new project from a template a plugin ships."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.names import NAME_RULE, is_valid_name
from conveyor.session import Session


def configure(commands: Any, host: Any) -> None:
    templates = host.contributions.templates
    listing = ", ".join(f"{n} ({t.description})" for n, t in sorted(templates.items()))
    init = commands.add_parser(
        "init", help="create a project folder from a template",
        description="Create a project: conveyor.yaml, data to start from, a README.\n"
                    f"templates: {listing or 'none installed (pip install conveyor-sklearn)'}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("name", help="the project's name and folder")
    init.add_argument("--template", "-t", default="classification",
                      help="which template (default: classification)")
    init.set_defaults(handler=init_project)


def init_project(args: argparse.Namespace, app: Session) -> int:
    templates = app.host.contributions.templates
    if args.template not in templates:
        available = ", ".join(sorted(templates)) or "none"
        raise UsageError(f"unknown template '{args.template}'; available: {available}",
                         hint=None if templates else "templates come with plugins: "
                                                     "pip install conveyor-sklearn")
    name = Path(args.name).name
    if not is_valid_name(name):
        raise UsageError(f"'{args.name}' is not a usable project name: it must be {NAME_RULE}")
    destination = app.directory / args.name
    if destination.exists() and any(destination.iterdir()):
        raise UsageError(f"{destination} already exists and is not empty")
    # Build in a temporary sibling and rename, so a failure leaves no half-made project.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=destination.parent))
    try:
        templates[args.template].create(staging, name)
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        if destination.exists():
            destination.rmdir()
        os.replace(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        # Plugins add to the new project in its final folder (a DVC repository, a schema...).
        app.host.call_each("conveyor_after_init", project_dir=destination.resolve(),
                           template=args.template)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    print(f"created {destination} from the '{args.template}' template\n"
          f"next:\n  cd {args.name}\n  conveyor run\n  conveyor runs list")
    return 0
