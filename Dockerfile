# syntax=docker/dockerfile:1
# The image runs `abproxy serve` as uid 10001 with config/docker.yaml baked in at
# /etc/abproxy/abproxy.yaml (listens on 0.0.0.0:8080, admin 0.0.0.0:8081, upstreams
# http://moon:9001 and http://mars:9002, data in the /var/lib/abproxy volume).
#
# Build:  docker build -t abproxy .
# Try it: the same image runs the two built-in backends the baked-in config names (their
# healthcheck is off: it probes the proxy's admin listener, which a backend has not).
#   docker network create abproxy
#   docker run -d --network abproxy --name moon --no-healthcheck abproxy \
#     backend --name Moon --listen 0.0.0.0:9001
#   docker run -d --network abproxy --name mars --no-healthcheck abproxy \
#     backend --name Mars --listen 0.0.0.0:9002
#   docker run -d --network abproxy --name abproxy -p 8080:8080 -p 127.0.0.1:8081:8081 \
#     -e ABPROXY_ADMIN_TOKEN=change-me-at-least-16-chars -v abproxy-data:/var/lib/abproxy abproxy
# Your own config: mount a directory (not a single file: the admin page's Save writes a
# temporary file next to the config and renames it) that uid 10001 can write:
#   docker run ... -v "$PWD/deploy:/etc/abproxy" abproxy      # deploy/abproxy.yaml
# compose.yaml runs two replicas, both backends and Prometheus: `docker compose up`.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
# Cargo.toml declares the benchmarks: their files must be there for the manifest to load.
COPY benches ./benches
# Dependency caching with BuildKit cache mounts rather than a stub-main layer: the
# registry and target/ persist between builds, so a source change recompiles only
# abproxy and a Cargo.lock change only the crates that changed; and no stub files have
# to mirror the manifest's targets (lib, bin, a test and three benchmarks). The binary
# is copied out of the cache mount in the same step, or the next stage would not see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
 && strip -o /usr/local/bin/abproxy target/release/abproxy

FROM debian:bookworm-slim
# The system's CA certificates: https:// upstreams without a ca_file are verified
# against them (the slim image ships none, and every TLS handshake would fail).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The data volume and the config directory belong to the image's user: the counts log,
# the run book and the generated secret are written there, and the admin page's Save
# writes a temporary file next to the config and renames it over.
RUN groupadd --system --gid 10001 abproxy \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin abproxy \
 && mkdir -p /var/lib/abproxy /etc/abproxy \
 && chown abproxy:abproxy /var/lib/abproxy /etc/abproxy
COPY --from=build /usr/local/bin/abproxy /usr/local/bin/abproxy
COPY --chown=abproxy:abproxy config/docker.yaml /etc/abproxy/abproxy.yaml
USER abproxy
# The run book, the counts log and a generated secret: keep them across containers.
VOLUME /var/lib/abproxy
EXPOSE 8080 8081
# The admin listener's /healthz, probed by the binary itself (the image has no curl).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/abproxy", "healthcheck", "--url", "http://127.0.0.1:8081/healthz", "--timeout", "3s"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/abproxy"]
CMD ["serve", "--config", "/etc/abproxy/abproxy.yaml"]
