# Multi-stage build: compile with the locked dependency set, ship only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
COPY config config
COPY benches benches
RUN cargo build --release --locked --bin gpu-monitoring-api

# glibc, CA certificates and a non-root user, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gpu-monitoring-api /usr/local/bin/gpu-monitoring-api
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gpu-monitoring-api"]
