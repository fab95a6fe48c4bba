# One image for the worker (`gastown worker`, the default), the bridge (`gastown bridge`) and the
# pods of kubernetes-mode polecats: it carries their entrypoint (`python3 -m launch.pod_entrypoint`)
# and the three agent CLIs, pinned, installed by agents/install as `make test` installs them.

# The agents, built where node and npm are (the image itself needs neither: claude and opencode are
# native binaries), on the same Python as the image, whose path aider's virtualenv keeps.
FROM python:3.11-slim-bookworm AS agents
COPY --from=node:20-bookworm-slim /usr/local/bin/node /usr/local/bin/node
COPY --from=node:20-bookworm-slim /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /opt/gastown/agents
COPY agents/install agents/package.json agents/package-lock.json agents/aider.lock ./
RUN ./install python3 && rm -rf /root/.npm /root/.cache

FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client tmux \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 gastown \
 && useradd --uid 65532 --gid 65532 --home-dir /home/polecat --create-home gastown

WORKDIR /opt/gastown
# The runtime lock: no test or lint tools (the dev lock is theirs, for `make test`).
COPY requirements.runtime.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.runtime.lock
COPY --from=agents /opt/gastown/agents ./agents
COPY crds ./crds
COPY contracts ./contracts
COPY launch ./launch
COPY workflows ./workflows
COPY activities ./activities
COPY client ./client
COPY bridge ./bridge
COPY board ./board
COPY worker ./worker
COPY cli ./cli
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

USER 65532:65532
# The agents by name: a pod's command line is `claude ...`, `opencode ...`, `aider ...`, as in local mode.
ENV HOME=/home/polecat PYTHONUNBUFFERED=1 PATH=/opt/gastown/agents/bin:/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["gastown"]
CMD ["worker"]
