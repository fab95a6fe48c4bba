"""`python -m tests.as_host PRIVATE MOUNTPOINT -- COMMAND...`: run COMMAND as a host of its own.

Run inside a new mount namespace (`unshare --mount --propagation private`): it
binds PRIVATE over MOUNTPOINT, seen by this process and its children only,
then becomes COMMAND (see tests/hosts.py).
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> None:
    private, mountpoint, separator, *command = sys.argv[1:]
    assert separator == "--" and command, __doc__
    subprocess.run(["mount", "--bind", private, mountpoint], check=True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
