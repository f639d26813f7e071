# driftloop as a container: the daemon with its HTTP API.
#   docker build -t driftloop .
#   docker run -e DRIFTLOOP_TOKEN=… -p 127.0.0.1:8765:8765 -v driftloop-state:/var/lib/driftloop \
#     driftloop run --config /etc/driftloop/service.yaml
# Mount your own config at /etc/driftloop/service.yaml; inside the container the API must
# bind 0.0.0.0 (api.host) for the published port to reach it, so keep `-p 127.0.0.1:…`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system driftloop && useradd --system --gid driftloop --home /opt/driftloop driftloop
WORKDIR /opt/driftloop

COPY requirements.txt pyproject.toml README.md ./
RUN python -m venv .venv && .venv/bin/pip install -r requirements.txt

COPY runtime runtime
COPY detectors detectors
COPY strategies strategies
COPY configs configs
RUN .venv/bin/pip install --no-deps --no-build-isolation -e . \
    && mkdir -p /var/lib/driftloop /etc/driftloop \
    && sed -e 's|^state_dir: .*|state_dir: /var/lib/driftloop|' \
           -e 's|^  host: 127.0.0.1|  host: 0.0.0.0|' configs/service.yaml > /etc/driftloop/service.yaml \
    && chown -R driftloop:driftloop /var/lib/driftloop

USER driftloop
VOLUME ["/var/lib/driftloop"]
EXPOSE 8765
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/readyz', timeout=4).status != 200)"
ENTRYPOINT ["/opt/driftloop/.venv/bin/driftloop"]
CMD ["run", "--config", "/etc/driftloop/service.yaml"]
