"""The town board: a web page of the whole town, live, with the CLI's actions (`gastown board`).

- `town.py`: the town at one moment, read as the CLI reads it (visibility and memos);
- `server.py`: the pages, the live event stream, the actions, the token.

It sits above the bridge layer: it uses the reconcile core's reads, signals and updates.
"""
