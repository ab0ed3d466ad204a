# syntax=docker/dockerfile:1
#
# Boardroom container image. See docker/README.md for how to run it next to Synapse and
# docs/BUILD.md for why RocksDB comes from Debian.
#
#   docker build -t boardroom .
#   docker run --rm -v "$PWD/boardroom.toml:/config/boardroom.toml:ro" \
#       -v boardroom-data:/data boardroom
#
# Both stages are Debian bookworm on purpose: the binary links Debian bookworm's
# librocksdb 7.8 (rocksdb crate 0.20.1 links against nothing newer), so the build stage
# and the runtime stage must come from the same Debian release.

ARG RUST_VERSION=1.95

# The librocksdb version both stages install: the binary links this one (docs/BUILD.md).
ARG ROCKSDB_DEB_VERSION=7.8.3-2

# ---- build ----------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG ROCKSDB_DEB_VERSION

# libclang-dev: bindgen (librocksdb-sys) needs it. librocksdb-dev: the library we link,
# pinned to the version the runtime stage installs.
# Not pinned (hadolint's DL3008): libclang-dev follows bookworm's point releases, and a
# pinned Debian version disappears from the mirror once it is updated, breaking the build.
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libclang-dev "librocksdb-dev=${ROCKSDB_DEB_VERSION}"

WORKDIR /src
COPY . .
# The commit `boardroom --version` names (.git is not in the build context):
# `docker build --build-arg BOARDROOM_COMMIT=$(git rev-parse --short=12 HEAD) .`
ARG BOARDROOM_COMMIT=unknown
ENV BOARDROOM_COMMIT=${BOARDROOM_COMMIT}

# .cargo/config.toml sets ROCKSDB_LIB_DIR=/usr/lib/x86_64-linux-gnu in [env]. Cargo's
# [env] never overrides a variable already in the environment (unless `force = true`), so
# setting it here points the build at the right multiarch directory on arm64 too.
# The registry and the target directory are BuildKit cache mounts: a rebuild after a code
# change does not download or recompile the dependencies. The binary is copied out of the
# cache mount within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    ROCKSDB_LIB_DIR="/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)" \
    && export ROCKSDB_LIB_DIR CARGO_TARGET_DIR=/src/target \
    && test -e "$ROCKSDB_LIB_DIR/librocksdb.a" \
    && cargo build --release --locked --bin boardroom \
    && install -D -m 0755 target/release/boardroom /out/boardroom

# ---- runtime --------------------------------------------------------------------------
FROM docker.io/library/debian:bookworm-slim
ARG ROCKSDB_DEB_VERSION

# The binary links RocksDB statically (.cargo/config.toml); librocksdb7.8 pulls in the
# libraries it calls (snappy, lz4, zstd, zlib, bzip2, libstdc++), pinned to the version
# the binary was built with. ca-certificates:
# reqwest (rustls) verifies an https:// homeserver URL against the system's roots.
# Not pinned (hadolint's DL3008): ca-certificates must take bookworm's security updates,
# and a pinned version disappears from the mirror once it is updated.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "librocksdb7.8=${ROCKSDB_DEB_VERSION}" ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid: a bind-mounted config must be readable by uid 10001.
RUN groupadd --system --gid 10001 boardroom \
    && useradd --system --uid 10001 --gid boardroom --home-dir /data \
        --shell /usr/sbin/nologin boardroom \
    && install -d -o boardroom -g boardroom -m 0750 /data \
    && install -d -m 0755 /config

COPY --from=build /out/boardroom /usr/local/bin/boardroom

# Numeric, so that the runtime (and Kubernetes' runAsNonRoot) needs no /etc/passwd lookup.
USER 10001:10001
WORKDIR /data
# The RocksDB database: set `[database] path = "/data/boardroom.db"` in the config.
VOLUME ["/data"]
# `boardroom registration` and `check-config` find the config here without --config.
ENV BOARDROOM_CONFIG=/config/boardroom.toml
# The appservice API. Set `[appservice] listen = "0.0.0.0:9009"`: the default,
# 127.0.0.1:9009, is not reachable from outside the container. With
# `[api] listen = "0.0.0.0:9010"` the HTTP API has a port of its own (publish that one
# to task apps, and keep 9009 for the homeserver).
EXPOSE 9009

ENTRYPOINT ["boardroom"]
CMD ["serve", "--config", "/config/boardroom.toml"]
