"""The markers plugin authors decorate their hooks with."""

import pluggy

PROJECT_NAME = "conveyor"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
