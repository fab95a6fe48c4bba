"""The `gastown` command: apply, get, describe, logs, the embedded runtime, the demo.

The top layer: it starts the worker (`gastown up`, `gastown worker`) and the
Kubernetes bridge (`gastown bridge`), and talks to the reconcile core in
`bridge/` like any other client.
"""
