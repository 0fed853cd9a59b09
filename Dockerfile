# syntax=docker/dockerfile:1
# The gco-tasks image: one image for worker, beat, Flower and the `gco-tasks` CLI.
# Dependencies come from requirements.lock (pinned, hash-checked); the package itself is installed
# with --no-deps, so nothing unpinned enters the image. Pin the base by digest in your registry mirror.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY gco_tasks ./gco_tasks
RUN pip install --no-deps . \
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
