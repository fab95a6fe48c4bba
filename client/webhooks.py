"""Where a Witness's Slack webhook URL is kept on a laptop: a private file the worker reads.

The CLI stores it at `apply` (the URL never enters a workflow), the worker's
notify activity reads it, and `delete` forgets it.
"""

from __future__ import annotations

from pathlib import Path

from client.private_files import write_private


def webhook_file(home: Path, witness: str) -> Path:
    return home / "secrets" / "witness" / witness / "slack-webhook-url"


def store_webhook(home: Path, witness: str, url: str) -> None:
    """Keep a Witness's webhook URL where this machine's worker reads it (0600, written atomically)."""
    path = webhook_file(home, witness)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, url)


def forget_webhook(home: Path, witness: str) -> None:
    webhook_file(home, witness).unlink(missing_ok=True)
