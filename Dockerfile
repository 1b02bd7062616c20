# Wyoming TTS server that streams Piper speech: a drop-in for wyoming-piper.
#
#   docker build -t wyoming-piper-stream .
#   docker run -d -p 10200:10200 -v /path/to/voices:/data wyoming-piper-stream [--voice NAME ...]
#
# Multi-arch: no architecture-specific steps. Every dependency has cp311 manylinux
# wheels for linux/amd64 and linux/arm64 (checked with `pip download --only-binary=:all:
# --platform manylinux_2_28_x86_64` and `manylinux_2_28_aarch64`). linux/arm/v7 does
# not work: onnxruntime, numpy and onnx publish no armv7l wheels.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    XDG_CACHE_HOME=/data/.cache

# Phonemizers of other Piper phoneme types, comma-separated: zh, ja, th (README: phoneme
# types), e.g. docker build --build-arg EXTRAS=ja,th . The image installs .[${EXTRAS}].
ARG EXTRAS=""

# Dependencies first (with those of the extras), from pyproject.toml alone: this layer
# stays cached until they change.
COPY pyproject.toml /tmp/build/
RUN python -m venv /opt/venv \
    && EXTRAS="${EXTRAS}" python -c "import os, tomllib; \
project = tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']; \
extras = [e.strip() for e in os.environ['EXTRAS'].split(',') if e.strip()]; \
print('\n'.join(project['dependencies'] \
+ [d for e in extras for d in project['optional-dependencies'][e]]))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The package itself, without touching the dependency layer.
COPY README.md /tmp/build/
COPY wyoming_piper_stream /tmp/build/wyoming_piper_stream
RUN pip install --no-cache-dir --no-deps /tmp/build \
    && rm -rf /tmp/build

# The embedded voice split and measured now, into a cache the server only reads
# (--prebuilt-cache in the entry script): a new container's first request is as fast
# as a warm start. Owned by root, so the server's user cannot change it.
RUN python -m wyoming_piper_stream.prepare --cache-dir /opt/wyoming-piper-stream/cache

COPY docker/run.sh /usr/local/bin/wyoming-piper-stream-run

# Non-root user; /data holds voices (<name>.onnx + <name>.onnx.json), downloads and
# (XDG_CACHE_HOME) the cache of split voices, so restarts load voices fast.
# A bind-mounted folder must be writable by uid 1000 (or run with --user).
RUN groupadd --gid 1000 piper \
    && useradd --uid 1000 --gid piper --create-home --home-dir /home/piper piper \
    && mkdir -p /data \
    && chown piper:piper /data
USER 1000:1000
WORKDIR /data
VOLUME /data
EXPOSE 10200

HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "wyoming_piper_stream.health", "--uri", "tcp://127.0.0.1:10200"]

# Extra arguments go to the server; it also reads WYOMING_PIPER_STREAM_ARGS itself.
ENTRYPOINT ["wyoming-piper-stream-run"]
