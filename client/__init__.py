"""What every process uses to reach Gas Town: settings, the Temporal connection, reads.

Below activities, the reconcile core (`bridge/`), the worker and the CLI,
which all connect, read running workflows and keep a Witness's webhook the
same way; above `contracts` and `crds`. Workflows never import it: it does I/O.
"""
