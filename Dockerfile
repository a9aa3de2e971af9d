# natsd image: build the server and manage, run natsd with config/nats.conf.
FROM rust:1.86-slim AS build
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
