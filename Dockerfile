# syntax=docker/dockerfile:1
# Build:  docker build -t abproxy .
# Run:    docker run -p 8080:8080 -p 8081:8081 \
#           -v "$PWD/config/abproxy.yaml:/etc/abproxy/abproxy.yaml:ro" abproxy
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
# Cargo.toml declares the benchmarks: their files must be there for the manifest to load.
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/abproxy

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin abproxy \
 && mkdir -p /var/lib/abproxy && chown abproxy /var/lib/abproxy
COPY --from=build /src/target/release/abproxy /usr/local/bin/abproxy
COPY config/docker.yaml /etc/abproxy/abproxy.yaml
USER abproxy
# The run book, the counts log and a generated secret: keep them across containers.
VOLUME /var/lib/abproxy
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/abproxy"]
CMD ["serve", "--config", "/etc/abproxy/abproxy.yaml"]
