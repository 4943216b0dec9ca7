"""A sweep on Ray (`hydra/launcher=ray_cluster`) checks its cluster before Hydra launches.

hydra-ray-launcher calls `ray.init(address=...)` when the sweep starts, and Ray retries a
connection to an address where nothing answers for a long time (the sweep seems to hang).
The preset registers `CheckClusterAddress` as a Hydra callback: on `on_multirun_start`, before
the launcher is made, a HOST:PORT (or ray://HOST:PORT) address gets the same TCP check as
`ray.address` of the stages on Ray (`conveyor_ray.cluster.check_reachable`); nothing answering
is exit 2 naming `hydra.launcher.ray.init.address` and where its value came from (the command
line, the project's config, RAY_ADDRESS, or the preset). The callback is allowed by the core's
check of `hydra.callbacks` because the plugin registers its exact path
(`conveyor_target_prefixes`): the preset may be chosen on the command line or in conveyor.yaml's
defaults (`- override hydra/launcher: ray_cluster`). `auto` is left to Ray, which fails at
once without a local cluster.

Hydra reports an exception of a callback with a traceback and exit 1, so the error is printed
here, as Conveyor prints errors (`error:` and `hint:` lines, secrets scrubbed), and the command
ends with `SystemExit(2)`, which Hydra lets through.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from conveyor import ConfigError

SETTING = "hydra.launcher.ray.init.address"


PRESET = Path(__file__).parent / "conf" / "hydra" / "launcher" / "ray_cluster.yaml"


def preset_address() -> str:
    """The address as the preset writes it (`${oc.env:RAY_ADDRESS,auto}`), unresolved."""
    import yaml

    return str(yaml.safe_load(PRESET.read_text())["hydra"]["launcher"]["ray"]["init"]["address"])


def address_origin(address: str, hydra_overrides: list[str], written: str | None = None) -> str:
    """Where the sweep's address came from, for messages. `written`: the setting before its
    interpolations are resolved; anything but the preset's own value was set by the project's
    config (the command line was looked at first)."""
    if any(o.lstrip("+").startswith(f"{SETTING}=") for o in hydra_overrides):
        return "the command line"
    if written is not None and written != preset_address():
        return f"the project's config ({SETTING}: {written})"
    if os.environ.get("RAY_ADDRESS", "").strip() == address:
        return "environment variable RAY_ADDRESS"
    return "hydra/launcher=ray_cluster's default"


def check_sweep_address(address: str, origin: str) -> None:
    """`ConfigError` (naming the setting) when no cluster answers at a HOST:PORT address."""
    from conveyor_ray.cluster import check_reachable
    from conveyor_ray.config import AUTO, LOCAL

    if not address or address.strip().lower() in (AUTO, LOCAL):
        return
    check_reachable(address.strip(), f"{SETTING}={address!r} (from {origin})")


try:
    from hydra.experimental.callback import Callback
except ImportError:  # Hydra comes with conveyor; an old one lacks callbacks
    Callback = object  # type: ignore[assignment,misc]


class CheckClusterAddress(Callback):  # type: ignore[misc,valid-type]
    """Hydra callback of the `ray_cluster` preset: the cluster answers before the sweep."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from conveyor.secrets import scrub
        from omegaconf import OmegaConf

        from conveyor_ray.cluster import keep_repeated_lines

        keep_repeated_lines()  # before the launcher imports Ray

        launcher = config.hydra.launcher
        address = str(launcher.ray.init.get("address") or "")
        written = OmegaConf.to_container(launcher.ray.init, resolve=False).get("address")
        overrides = [str(o) for o in config.hydra.overrides.get("hydra") or []]
        try:
            check_sweep_address(address, address_origin(
                address, overrides, None if written is None else str(written)))
        except ConfigError as exc:
            text = f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else "")
            print(scrub(text), file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None
