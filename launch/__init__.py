"""How an agent is launched: pure pieces and the programs that run beside it.

- `agents.py`: each agent's command line and environment from its agentConfig (pure);
- `pane.py`: what a tmux pane runs (the worker's environment for the agent, then the agent);
- `pod_entrypoint.py`: what a polecat's pod runs, inside the image (clone, run, push).

Not activities: the last two run in other processes (a pane, a pod), by path
or as `python3 -m launch.pod_entrypoint`, with the standard library only.
"""
