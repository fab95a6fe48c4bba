"""Files only their owner can read (a key, a webhook URL), written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600, by renaming a finished temporary file over it: a reader
    never sees half of it, nor a moment when another user could read it."""
    fd, temporary = tempfile.mkstemp(dir=path.parent)  # created 0600
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)
