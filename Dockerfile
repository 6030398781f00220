# An example image: the app depends on arbiterd, and arbiter is the container's entrypoint
# (PID 1), serving the app in /app.
#
#   docker build -t myapp .
#   docker run --rm -p 8000:8000 --cpus 2 myapp                   # -c /app/arbiter.conf.ts, -w auto -> 2 workers
#   docker run --rm -p 8000:8000 -e ARBITER_WORKERS=4 myapp       # settings by ARBITER_* ...
#   docker run --rm -p 8000:8000 myapp server.js -w 4             # ... or by command line
#
# Your own app: its package.json lists arbiterd among its dependencies ("arbiterd": "^0.1"
# from the registry), and the "pack" stage below is not needed. Here arbiterd is packed from
# this checkout, as `npm publish` would pack it, and installed from that tarball.
# test/docker.test.ts performs these steps without Docker.

# ---- pack: this checkout of arbiterd as the tarball npm would install.
FROM node:20-slim AS pack
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts
COPY src ./src
COPY workers ./workers
COPY bin ./bin
COPY man ./man
COPY README.md LICENSE config.example.ts ./
RUN npm run build && npm pack --ignore-scripts && mv arbiterd-*.tgz /arbiterd.tgz

# ---- the app: arbiterd is one of its dependencies, installed like the others.
FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY examples/docker/package.json ./
COPY --from=pack /arbiterd.tgz ./
RUN npm install --omit=dev --no-audit --no-fund
COPY examples/docker/ ./

# Listen on all interfaces in the container; -w auto sizes from the container's CPU limit
# (cgroup cpu.max / cfs quota / cpuset) and the log says what it found.
ENV ARBITER_BIND=0.0.0.0:8000 \
    ARBITER_WORKERS=auto \
    ARBITER_GRACEFUL_TIMEOUT=30
EXPOSE 8000

# Not root: the node image's unprivileged user.
USER node

# arbiter runs as PID 1 (not npx or a shell, which would swallow TERM): TERM (docker stop,
# Kubernetes) is a graceful stop, INT/QUIT are quick stops, its exit code is the
# container's, and it reaps its own workers. It does not reap orphans it never started: if
# your app spawns subprocesses that outlive their parent, run with `docker run --init`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/node_modules/.bin/arbiter"]
CMD ["-c", "/app/arbiter.conf.ts"]
