"""`make postgres` installs Debian's postgresql without starting its service (review #16: the
package's own cluster on port 5432 was left running in CI). apt-get is a stand-in script here
(no package is installed): it records whether a policy-rc.d refusing every service start
(exit 101) was in force during `apt-get install`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("make") is None,
                    reason="the recipe runs apt-get as root (sudo otherwise); CI runs as root")
@pytest.mark.parametrize("policy_before", [None, "#!/bin/sh\nexit 0\n"])
def test_postgresql_is_installed_with_service_starts_refused(tmp_path, policy_before):
    policy = tmp_path / "policy-rc.d"
    if policy_before is not None:
        policy.write_text(policy_before)  # the machine's own: used as it is, and kept
        policy.chmod(0o755)
    seen = tmp_path / "seen"
    apt_get = tmp_path / "apt-get"
    apt_get.write_text(f"""#!/bin/sh
if [ "$1" = install ]; then
  if [ -x {policy} ]; then {policy}; echo "policy exit $?" >> {seen}; else echo none >> {seen}; fi
fi
""")
    apt_get.chmod(0o755)
    done = subprocess.run(
        ["make", "-s", "postgres", f"POSTGRES_BIN={tmp_path}/none", f"POLICY_RC_D={policy}",
         f"APT_GET={apt_get}"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": "/usr/bin:/bin"})  # no initdb on this PATH
    assert done.returncode == 0, done.stderr
    if policy_before is None:
        assert seen.read_text() == "policy exit 101\n"
        assert not policy.exists()
    else:
        assert seen.read_text() == "policy exit 0\n"
        assert policy.read_text() == policy_before
