"""What crosses a boundary: the names and messages both sides of a call agree on.

Below workflows and activities (which never import each other) and above the
API models in `crds`: search attributes and memo keys, and the messages that
workflows, activities, the client layer and the bridge exchange.
"""
