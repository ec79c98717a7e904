# byok-proxy container image.
#
# Two stages: the first builds a virtualenv with the proxy and its speed-ups,
# the second copies only that venv onto a clean slim base and runs it as an
# unprivileged user. Nothing secret is built in: the config and the master
# key are mounted at run time (see deploy/kubernetes/), and .dockerignore
# admits only the source tree.

FROM python:3.12-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/byok-proxy
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY plugins ./plugins
RUN /opt/byok-proxy/bin/pip install --no-cache-dir ".[fast]"

FROM python:3.12-slim-bookworm
LABEL org.opencontainers.image.title="byok-proxy" \
      org.opencontainers.image.description="OpenAI-compatible gateway sidecar for your own LLM provider keys" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 byok \
    && useradd --system --uid 10001 --gid byok --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin byok
COPY --from=build /opt/byok-proxy /opt/byok-proxy
ENV PATH=/opt/byok-proxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BYOK_CONFIG=/etc/byok-proxy/config.yaml
USER 10001:10001
EXPOSE 8080
# Liveness from inside the container; the port follows BYOK_HEALTHCHECK_PORT when the config moves it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BYOK_HEALTHCHECK_PORT', '8080'), timeout=4)"]
# SIGTERM drains: readiness goes false, in-flight streams finish within shutdown_grace, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["byok-proxy"]
# Listen on every interface inside the container; the proxy then insists on auth.api_keys.
CMD ["serve", "--host", "0.0.0.0"]
