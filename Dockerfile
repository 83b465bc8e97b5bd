# syntax=docker/dockerfile:1
# hopguard: one image for every command. The Kubernetes manifests pass the command as args:
#   authz --config /etc/hopguard/authz/authz.yaml     (the sidecar; admin on :9192)
#   issuer --config /etc/hopguard/issuer/issuer.yaml  (the token service)
#   inject --config /etc/hopguard/inject/inject.yaml  (the sidecar injector webhook)
# Runs as a numeric non-root user and writes nothing to its filesystem, so it works with
# readOnlyRootFilesystem: true.

FROM node:20.20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npm run build

# Production dependencies only; install scripts are not needed by any of them.
FROM node:20.20-bookworm-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20.20-bookworm-slim
# V8 grows its old generation lazily: under load hopguard's RSS climbs past 200 MB, mostly
# garbage not yet collected, though its live heap is ~20 MB (+20 MB per 100,000 revocations).
# A 128 MB old-space cap makes it collect sooner: RSS under load stays below 150 MB, for ~8 %
# fewer checks/s at saturation (npm run bench, memory section). Raise it, and the pod's memory
# limit, past ~400,000 live revocations, and sooner where most checks bring new tokens (with
# 300,000 and a new token on every check: 5,000 checks/s against 10,100-10,900 at 256 MB, for
# 235 against ~265 MB RSS); NODE_OPTIONS= turns it off. store: memory's one-time
# marks live off the V8 heap (up to 50 MB of RSS at the default memory.max_one_time_entries).
# The young generation stays at V8's default (16 MB semi-spaces): 32 MB gave ~10-15 % more
# checks/s on new tokens, but V8 collects the old generation instead of scavenging whenever it
# could not take the whole young generation, so under this cap it left less room for live
# revocations: with 300,000 of them and a new token on every check, 2,600-3,950 checks/s against
# 5,000-5,200 (README, Performance).
ENV NODE_OPTIONS=--max-old-space-size=128
ENV NODE_ENV=production \
    HOPGUARD_HEALTH_URL=http://127.0.0.1:9192/healthz
WORKDIR /app
# Envoy's protos come from node_modules/@grpc/grpc-js-xds; envoy/ is the injector's template.
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json README.md ./
COPY envoy/ ./envoy/
# hopguard's own service definitions: messages.grpc_listen loads messages.proto at start.
COPY proto/ ./proto/
USER 10001:10001
EXPOSE 9191 9192
# The authz sidecar's admin /healthz by default; for `issuer` set HOPGUARD_HEALTH_URL to its
# admin listener (e.g. http://127.0.0.1:9443/healthz). Kubernetes uses the pods' probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.HOPGUARD_HEALTH_URL).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["--help"]
