# syntax=docker/dockerfile:1
# The coordinator image: Bun compiles the single executable in a build stage; the final image is
# that one file on distroless (glibc and CA roots, no shell, no package manager), run as non-root.
#
#   docker build --build-arg TESSERA_VERSION=v1.2.3 -t tessera .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   (the release workflow does this)
ARG BUN_VERSION=1.4.4

# The build stage runs on the builder's own platform and cross-compiles for the target one, so a
# multi-arch build needs no emulation. x64 gets Bun's baseline runtime (no AVX2 needed), as releases do.
FROM --platform=$BUILDPLATFORM oven/bun:${BUN_VERSION} AS build
ARG TARGETARCH
ARG TESSERA_VERSION=
# No .git in the build context: the commit and its time come in as arguments (the release workflow
# passes them), so `tessera version --json` says which commit the image is.
ARG TESSERA_COMMIT=
ARG SOURCE_DATE_EPOCH=
WORKDIR /src
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
RUN case "$TARGETARCH" in \
      amd64) target=bun-linux-x64-baseline ;; \
      arm64) target=bun-linux-arm64 ;; \
      *) echo "no tessera build for linux/$TARGETARCH" >&2; exit 1 ;; \
    esac \
 && BUN_TARGET="$target" TESSERA_OUTFILE=/out/tessera TESSERA_VERSION="$TESSERA_VERSION" \
    TESSERA_COMMIT="$TESSERA_COMMIT" SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" bun scripts/build.ts \
 && mkdir -p /out/data

FROM gcr.io/distroless/base-debian12:nonroot
LABEL org.opencontainers.image.title="tessera" \
      org.opencontainers.image.description="Consent-gated remote access: the coordinator"
COPY --from=build /out/tessera /usr/local/bin/tessera
# Audit log and database live here; a named volume mounted on /data starts out owned by this user.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532
# 8443: TLS for agents, shares and guests (control and data). 8080: /healthz, /metrics, revoke.
EXPOSE 8443 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/tessera"]
# /certs is the directory `tessera ca` wrote, mounted read-only (see docker-compose.yml).
CMD ["coordinator", "--certs", "/certs", "--listen", "0.0.0.0:8443", "--http", "0.0.0.0:8080", "--audit", "/data/audit.jsonl", "--db", "/data/tessera.db", "--log-format", "json"]
