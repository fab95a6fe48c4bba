"""Reaching Gas Town's Temporal: the settings every process reads, and the connection.

Above workflows and activities, below the reconcile core (`bridge/`), the
worker and the CLI, which all connect the same way.
"""
