# One image for the worker (`gastown worker`, the default) and the bridge
# (`gastown bridge`); it also carries the polecat pod entrypoint
# (`python3 -m activities.pod_entrypoint`). The agent CLIs join it with issue #7.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client tmux \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 gastown \
 && useradd --uid 65532 --gid 65532 --home-dir /home/polecat --create-home gastown

WORKDIR /opt/gastown
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY crds ./crds
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY bridge ./bridge
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

USER 65532:65532
ENV HOME=/home/polecat PYTHONUNBUFFERED=1
ENTRYPOINT ["gastown"]
CMD ["worker"]
