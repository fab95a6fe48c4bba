"""How an agent is launched: pure pieces and the programs that run beside it.

- `agents.py`: each agent's command line and environment from its agentConfig (pure);
- `pane.py`: what a tmux pane runs (the worker's environment for the agent, then the agent);
- `gateway.py`, `gateway_server.py`: the model gateway agents' traffic goes through (its rules, its server);
- `usage.py`: usage ledgers and prices;
- `pod_entrypoint.py`, `pod_gateway.py`: what a polecat's pod runs, inside the image (clone, run
  through the pod's own gateway, push).

Not activities: the pane and the pod entrypoint run in other processes, by path
or as `python3 -m launch.pod_entrypoint`; the pane with the standard library only.
"""
