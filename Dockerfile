# portcullis: a small, non-root image. Build: docker build -t portcullis .
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
# A workspace member (the native fast path's Envoy filter): needed to read the workspace, not built.
COPY envoy-module envoy-module
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked || true
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked && strip target/release/portcullis

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
# gRPC (ext_authz, health) and admin (metrics, probes)
EXPOSE 9001 9090
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/portcullis.yaml"]
