# syntax=docker/dockerfile:1
# The MemoryWatch operator image: a wheel of the project (with the `operator` extra) built in one stage and
# installed into a virtualenv in a slim final stage that runs as the non-root user 65532. No compilers, no tests.
#   docker build -t memorywatch:dev .
#   docker run --rm memorywatch:dev --help

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel needs (see .dockerignore): pinned metadata first, so the dependency layer is cached.
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
# Every transitive dependency is pinned by constraints.txt; all of them ship binary wheels, so no compiler.
RUN pip wheel --wheel-dir /wheels -c constraints.txt ".[operator]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="memorywatch" \
      org.opencontainers.image.description="Catch memory leaks in Go services while they happen, and keep the evidence." \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# The venv gets no pip of its own: the base image's pip installs into it, from the built wheels only
# (--no-index, so every version is the one the builder pinned; hence no version on the line below).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir --no-index --find-links /wheels "memorywatch[operator]" \
    && groupadd --system --gid 65532 memorywatch \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin memorywatch \
    && mkdir -p /var/lib/memorywatch/captures \
    && chown -R 65532:65532 /var/lib/memorywatch
USER 65532:65532
WORKDIR /var/lib/memorywatch
# health (/healthz, /readyz) and Prometheus metrics, as the Helm chart wires them.
EXPOSE 8080 9090
ENTRYPOINT ["memorywatch"]
CMD ["run"]
