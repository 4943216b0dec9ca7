"""`conveyor.testing.serving`, the helper plugin authors' tests start a real server with: the
server's log file is closed on exit, and when the server never gets ready."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conveyor.testing import serving


def test_the_log_file_is_closed_when_the_server_exits_early(tmp_path):
    server = serving(tmp_path, timeout=60)  # no project here: `conveyor serve` exits 2
    with pytest.raises(AssertionError, match="conveyor serve exited 2"):
        server.__enter__()
    assert server.log_file.closed


def test_the_log_file_is_closed_on_exit(tmp_path):
    server = serving(tmp_path)
    server.log_file = server.log.open("w")
    server.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                      stdout=server.log_file)
    server.__exit__(None, None, None)
    assert server.process.returncode is not None and server.log_file.closed
