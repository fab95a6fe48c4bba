"""Errors the command line turns into its exit codes, raised by layers it imports only when needed."""

from __future__ import annotations


class RuntimeUnavailable(Exception):
    """The runtime could not be started or reached (CLI exit code 2)."""
