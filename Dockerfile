# natsd image: build the server and manage, run natsd with config/nats.conf.
# The build stage is the Rust release the workspace is tested with (Cargo.toml rust-version) on
# the Debian release of the runtime stage, so the binaries link against the glibc they run
# with. tests/compose checks that, and scripts/compose-test.sh builds the runtime stage below
# on binaries built on the host (no registry is reachable on the project's test machines).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p natsd -p manage

FROM debian:bookworm-slim
RUN useradd --system --home /srv/nats nats && mkdir -p /srv/nats/config /srv/nats/data \
    && chown -R nats /srv/nats
COPY --from=build /src/target/release/natsd /usr/local/bin/natsd
COPY --from=build /src/target/release/manage /usr/local/bin/manage
# nats.conf uses relative paths (./data, ./auth.conf): run from the deployment root.
WORKDIR /srv/nats
USER nats
EXPOSE 4222 8222
ENTRYPOINT ["natsd"]
CMD ["-c", "/srv/nats/config/nats.conf"]
