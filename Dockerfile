# gpumix operator image: `docker build -t gpumix:dev .`
#
# Two stages: the first builds gpumix's wheel (and only that); the second installs it into a
# clean base, so nothing used to build (pip caches, setuptools, sources) reaches the image.
# Every runtime dependency ships manylinux wheels (highspy, pydantic-core, PuLP's bundled CBC),
# so no compiler is needed in either stage.

# Pinned by tag; pin the digest too (python:3.11-slim-bookworm@sha256:...) in release builds.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY src ./src
# --no-deps: the wheel of gpumix alone; dependencies come from PyPI in the final stage, where
# pip resolves them against pyproject.toml's lower bounds.
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="gpumix" \
      org.opencontainers.image.description="kopf operator + MILP planner serving LLMs on mixed-GPU fleets" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN python -m pip install /wheels/*.whl \
    && rm -rf /wheels
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd;
# 65532 is the conventional "nonroot" id of distroless images.
USER 65532:65532
# The root filesystem is read-only in the chart; temporary files (PuLP/CBC) go to /tmp, which
# the chart mounts as an emptyDir.
WORKDIR /tmp
ENTRYPOINT ["gpumix", "operator"]
