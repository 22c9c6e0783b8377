# syntax=docker/dockerfile:1
# The MemoryWatch operator image: the project's wheel and its locked dependencies (constraints.txt) installed
# into a virtualenv in a builder stage, copied into a final stage that has Python and nothing to build with,
# running as the non-root user 65532 on a read-only root filesystem (/tmp and the capture store are volumes).
#
# Base images are build arguments: PYTHON_IMAGE (the final stage) and BUILDER_IMAGE (needs pip; defaults to
# PYTHON_IMAGE). Both must have python3 at the same path, since the virtualenv points at it.
#   docker build -t memorywatch:dev .                       # on the official python image
#   hack/build-image                                        # here: buildah + Debian bases made by mmdebstrap
#   docker run --rm memorywatch:dev --help

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG BUILDER_IMAGE=${PYTHON_IMAGE}

FROM ${BUILDER_IMAGE} AS builder
# PIP_BREAK_SYSTEM_PACKAGES: Debian's pip marks the system Python as externally managed; nothing is installed
# into it here (wheels are built into /wheels, then installed into /opt/venv), but the marker is checked anyway.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /src
# Only what the wheel needs (see .dockerignore): locked metadata first, so the dependency layer is cached.
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY operator/ operator/
# Every transitive dependency is locked by constraints.txt; all of them ship binary wheels, so no compiler.
# The venv gets no pip of its own: the builder's pip installs into it from the built wheels only (--no-index,
# so every version is the locked one; hence no version on the install line).
# A network that inspects TLS needs its CA: `--secret id=pip-ca,src=<bundle>` (hack/build-image passes $PIP_CERT
# or $SSL_CERT_FILE when set); without that secret pip uses its own bundle.
# hadolint ignore=DL3013
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m pip wheel --quiet --wheel-dir /wheels -c constraints.txt ".[operator]" \
    && python3 -m venv --without-pip /opt/venv \
    && python3 -m pip --python /opt/venv/bin/python install --quiet --no-index --find-links /wheels \
         "memorywatch[operator]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="memorywatch" \
      org.opencontainers.image.description="Catch memory leaks in Go services while they happen, and keep the evidence." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/memorywatch/memorywatch"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# glibc's allocator: two arenas instead of 8 per core, and freed memory above 128 KiB handed back to the
# kernel instead of kept for reuse. The engine's per-sample transients (response chunks, parse buffers)
# otherwise stay resident: RSS per target with full windows 332 -> 238 KiB at 100 targets, same CPU
# (docs/scaling.md, "2026-12-01 (late)"). The parse workers inherit it.
ENV MALLOC_ARENA_MAX=2 \
    MALLOC_TRIM_THRESHOLD_=131072 \
    MALLOC_MMAP_THRESHOLD_=131072
COPY --from=builder /opt/venv /opt/venv
# The user is written into /etc/passwd directly (no useradd on a minimal base); its home does not exist.
RUN echo 'memorywatch:x:65532:65532:memorywatch:/nonexistent:/usr/sbin/nologin' >>/etc/passwd \
    && echo 'memorywatch:x:65532:' >>/etc/group \
    && mkdir -p /var/lib/memorywatch/captures \
    && chown -R 65532:65532 /var/lib/memorywatch \
    && memorywatch --version
USER 65532:65532
WORKDIR /var/lib/memorywatch
# health (/healthz, /readyz) and Prometheus metrics, as the Helm chart wires them.
EXPOSE 8080 9090
ENTRYPOINT ["memorywatch"]
CMD ["run"]
