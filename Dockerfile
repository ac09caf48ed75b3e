# syntax=docker/dockerfile:1
#
# The Switchboard image: one static binary on a distroless base, running as
# a non-root user. Build and run:
#
#   docker build -t switchboard .
#   docker run --rm -p 127.0.0.1:8080:8080 -e DATABASE_URL=... -e REDIS_URL=... switchboard
#
# The same image runs every command: the default is `serve`; give `worker`
# or `migrate up` as the container's arguments for the others.
# See docs/operations.md, "Container image".

# Build stage: the Go of go.mod's `go` line.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY . .
# A static binary (no cgo: the base below has no libc), without the build
# paths and the symbol tables. The cache mounts keep downloaded modules and
# compiled packages between builds; `go build` fetches only the modules the
# binary needs (not the test-only ones of go.mod).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/switchboard ./cmd/switchboard

# Run stage: distroless "static" holds CA certificates (Twilio, Slack and
# TLS to Postgres or Redis need them), time zone data and /etc/passwd with
# the nonroot user, and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian13:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
# nonroot is 65532:65532; numeric, so that Kubernetes' runAsNonRoot can
# check it without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
# SIGTERM is the drain signal: /readyz turns 503 and WebSockets close with
# 1001 within --shutdown-timeout (25 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
