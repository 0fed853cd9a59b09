# syntax=docker/dockerfile:1
# The gco-tasks image: one image for worker, beat, Flower and the `gco-tasks` CLI.
# Dependencies come from requirements.lock (pinned, hash-checked); the package itself is a wheel built
# with the hash-checked setuptools of requirements-build.lock (no build isolation, so pip fetches nothing
# unpinned) and installed with --no-deps, so nothing unpinned enters the image. No tests, benchmarks or
# sandbox: .dockerignore keeps them out of the context. Pin the base by digest: build with
#   --build-arg PYTHON_IMAGE="$(k8s/pin-image.sh --print python:3.11-slim-bookworm)"
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The build backend, in a venv of its own that never reaches the runtime stage.
COPY requirements-build.lock ./
RUN python -m venv /opt/build-tools \
    && /opt/build-tools/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements-build.lock
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY gco_tasks ./gco_tasks
RUN /opt/build-tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip install --no-deps /tmp/wheels/gco_tasks-*.whl \
    && python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE}
# uid/gid 10001: what k8s/ (runAsUser) and compose.yaml (user) expect.
RUN groupadd --system --gid 10001 gco \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/gco --create-home \
       --shell /usr/sbin/nologin gco \
    && install -d -o 10001 -g 10001 /home/gco/.kube
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/gco \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WORKER_HEARTBEAT_FILE=/tmp/gco-tasks-worker.heartbeat
USER 10001:10001
WORKDIR /home/gco
EXPOSE 5555
# Exec form: celery is PID 1 and receives SIGTERM itself (warm shutdown: running tasks finish).
# `sh -c exec` only expands REGION, then replaces itself with celery. k8s/ and compose.yaml give each
# process its own command; this default is the region's worker.
CMD ["sh", "-c", "exec celery -A gco_tasks worker -Q \"gco.${REGION:-us-east-1}\" --loglevel INFO --without-mingle --without-gossip --concurrency 4"]
