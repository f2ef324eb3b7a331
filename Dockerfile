# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim image as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY server server
COPY mobile-protocol mobile-protocol
COPY authenticator authenticator
COPY tests tests
COPY migrations migrations
RUN cargo build --release --locked --bin countersign

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/countersign --create-home countersign
COPY --from=build /src/target/release/countersign /usr/local/bin/countersign
USER countersign
WORKDIR /var/lib/countersign
ENV COUNTERSIGN_LISTEN=0.0.0.0:8080 \
    COUNTERSIGN_DATA_DIR=/var/lib/countersign/data
EXPOSE 8080
ENTRYPOINT ["countersign"]
CMD ["serve", "--log-format", "json"]
