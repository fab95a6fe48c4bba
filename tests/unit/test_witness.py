"""A Witness's spec: what a webhook URL may be, and how it is kept out of what workflows carry."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.health import quiet_for, quiet_since_log
from crds import InvalidResource, Witness, parse_resource
from crds.witness import redacted_url, webhook_reference

URL = "https://hooks.slack.com/services/T000/B000/secret-token"


def witness(**slack: str) -> Witness:
    manifest = {
        "apiVersion": "gastown.gastown.io/v1alpha1",
        "kind": "Witness",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {"rigRef": "athena", "notifications": {"slack": slack}},
    }
    found = parse_resource(manifest)
    assert isinstance(found, Witness)
    return found


def test_a_webhook_url_must_be_http() -> None:
    """file://, bare words, schemeless hosts and overlong URLs are refused, naming the field, and the
    refusal never repeats the value (a mistyped URL is still a credential)."""
    token = "T0K3N"
    bad_urls = (
        f"file:///{token}",
        f"hooks.slack.com/services/{token}",
        f"ftp://example.com/{token}",
        URL + token * 500,
    )
    for bad in bad_urls:
        with pytest.raises(InvalidResource, match=r"spec\.notifications\.slack\.webhookURL: must") as refused:
            witness(webhookURL=bad)
        assert token not in str(refused.value)


def test_without_secrets_keeps_a_digest_not_the_url() -> None:
    """The spec a workflow gets has a stable digest of the URL in its place; the resource keeps the URL."""
    original = witness(webhookURL=URL, channel="#town")
    safe = original.without_secrets()
    assert safe.webhook_url == webhook_reference(URL) == webhook_reference(URL)
    assert "secret-token" not in safe.model_dump_json()
    assert original.webhook_url == URL
    assert safe.spec.notifications and safe.spec.notifications.slack
    assert safe.spec.notifications.slack.channel == "#town"
    again = witness(webhookURL=safe.webhook_url or "", channel="#town")
    assert again.without_secrets().spec == safe.spec  # a digest stays itself
    assert webhook_reference(URL + "x") != safe.webhook_url


def test_an_error_names_the_webhook_host_only() -> None:
    assert redacted_url(URL) == "https://hooks.slack.com/…"


def test_quiet_is_counted_from_the_newest_progress_file(tmp_path: Path) -> None:
    """The newest of a polecat's files (output, HEAD log, index) says how long it has been quiet."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("x")
    new.write_text("y")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    os.utime(new, (hour_ago + 600, hour_ago + 600))
    assert quiet_for([old, new, tmp_path / "missing"]) == pytest.approx(3000, abs=5)
    assert quiet_for([tmp_path / "missing"]) is None


def test_a_pods_quiet_is_read_from_its_last_log_line() -> None:
    """The kubelet's RFC 3339 (nanosecond) stamp of the last line; with no line, the attempt's start."""
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    line = ten_minutes_ago.strftime("%Y-%m-%dT%H:%M:%S.123456789Z") + " still thinking\n"
    assert quiet_since_log(line, None) == pytest.approx(600, abs=5)
    assert quiet_since_log("", ten_minutes_ago) == pytest.approx(600, abs=5)
    assert quiet_since_log("", None) is None
