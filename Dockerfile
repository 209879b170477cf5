# Image of the Rotor worker: `docker build -t rotor-worker .`, then run it with the TEMPORAL_*,
# VAULT_* and ROTOR_* variables that shared/config.ts reads. docker-compose.yml builds and wires
# it for you.

# The Temporal SDK's native core needs glibc, so the base is Debian slim, never Alpine (musl).
# 20.19 is the lowest Node release package.json's engines field accepts.
FROM node:20.19-bookworm-slim AS build
WORKDIR /app

# Dependencies get their own layer, so a source change does not reinstall them.
# --ignore-scripts skips Rotor's own prepare script, which would run tsc before the sources are
# copied. It also skips the install scripts of dependencies. In package-lock.json only two have
# one: @swc/core's installs a WebAssembly fallback when its native binary fails to load, and
# protobufjs's prints a version warning. Recheck this when adding a dependency with a script.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# test/ is part of the build because the CLI's demo command uses the provider emulators in it.
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund


FROM node:20.19-bookworm-slim

# The slim image ships no CA bundle. Whenever TLS is on, even with TEMPORAL_TLS_CA given, the
# Temporal SDK's native core loads the system trust store and fails with NativeCertsNotFound
# when it is missing.
RUN apt-get update \
  && apt-get install --yes --no-install-recommends ca-certificates \
  && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
WORKDIR /app

# Files stay owned by root, so the worker cannot rewrite its own code.
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/bin ./bin
COPY --from=build /app/dist ./dist

# The node user (uid 1000) comes with the base image.
USER node

# `rotor worker` stops on SIGTERM and gives running activities ROTOR_SHUTDOWN_GRACE (30s by
# default) to finish, so the stop timeout of whatever runs this image must be longer than that.
ENTRYPOINT ["node", "bin/rotor.js"]
CMD ["worker"]
