# Two images from one file (`deploy/images/build` builds both and reports their sizes):
#   --target operator  gastown/operator: the worker (`gastown worker`, the default), the bridge
#                      (`gastown bridge`) and the board (`gastown board`); no agents, no dev tools.
#   --target polecat   gastown/polecat: what a kubernetes-mode polecat's pod runs, the entrypoint
#                      (`python3 -m launch.pod_entrypoint`) with git, ssh and the three agent CLIs.
# One base image, `python:3.11-slim-bookworm`; where no registry can be reached,
# `deploy/images/stand-in-bases` builds a stand-in of it from Debian's packages.

# The agents, built where node and npm are: the images need neither (claude and opencode are
# native binaries). On the images' own Python, whose path aider's virtualenv keeps.
FROM python:3.11-slim-bookworm AS agents
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/gastown/agents
COPY agents/install agents/package.json agents/package-lock.json agents/aider.lock ./
# Each npm CLI's per-platform package is a second copy of the binary it already installed in bin/;
# aider's virtualenv needs no pip once built.
RUN ./install python3 \
 && rm -rf node_modules/@anthropic-ai/claude-code-linux-* node_modules/opencode-linux-* \
 && aider-venv/bin/python -m pip uninstall --quiet --yes pip \
 && rm -rf /root/.npm /root/.cache

# Our code and the runtime lock (no test or lint tools, no dev server: images talk to a Temporal
# service) in a virtualenv, built here so that the images get it without pip, setuptools or wheel.
FROM python:3.11-slim-bookworm AS venv
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/gastown/venv
ENV PATH=/opt/gastown/venv/bin:$PATH
WORKDIR /src
COPY requirements.runtime.lock ./
RUN pip install --no-cache-dir --no-compile --require-hashes -r requirements.runtime.lock
COPY pyproject.toml README.md ./
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
# Then what nothing runs: the build tools, type stubs (4 MB), the Rust sources of Temporal's core
# that its wheel carries (12 MB), the core's symbol table (7 MB); and bytecode for all but the Kubernetes
# clients' API and model classes, two thousand files loaded lazily of which we use a few dozen
# (compiled in memory as they load; 45 MB less).
RUN pip install --no-cache-dir --no-deps --no-build-isolation --no-compile . \
 && pip uninstall --quiet --yes setuptools wheel pip \
 && find /opt/gastown/venv -name '*.pyi' -delete \
 && cd /opt/gastown/venv/lib/python3.11/site-packages/temporalio/bridge \
 && rm -rf sdk-core && strip --strip-unneeded temporal_sdk_bridge.abi3.so \
 && python3 -m compileall -q -j 0 -x 'kubernetes/(aio/)?client/(api|models)/' /opt/gastown/venv/lib

# What both images share: git and ssh (the Refinery merges and pushes; a pod clones and pushes),
# the virtualenv, and the unprivileged user.
FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 gastown \
 && useradd --uid 65532 --gid 65532 --home-dir /home/polecat --create-home gastown
COPY --from=venv /opt/gastown/venv /opt/gastown/venv
ENV PATH=/opt/gastown/venv/bin:/usr/local/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 HOME=/home/polecat
WORKDIR /opt/gastown
USER 65532:65532

FROM runtime AS polecat
COPY --from=agents /opt/gastown/agents ./agents
# The agents by name: a pod's command line is `claude ...`, `opencode ...`, `aider ...`, as in local mode.
ENV PATH=/opt/gastown/venv/bin:/opt/gastown/agents/bin:/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["python3", "-m", "launch.pod_entrypoint"]

# Last, so that a plain `docker build .` (and docker-compose's `build: .`) gives the operator.
FROM runtime AS operator
ENTRYPOINT ["gastown"]
CMD ["worker"]
