# An example image: arbiter as the container's entrypoint (PID 1), serving the app in /app.
#
#   docker build -t myapp .
#   docker run --rm -p 8000:8000 --cpus 2 myapp                 # -w auto -> 2 workers
#   docker run --rm -p 8000:8000 -e ARBITER_WORKERS=4 myapp     # settings by ARBITER_* ...
#   docker run --rm -p 8000:8000 myapp -c /app/arbiter.config.ts  # ... or by config file
#
# Replace the "app" stage's COPY with your own app (and its package.json / npm ci).

# ---- build: arbiter's TypeScript needs the dev dependencies (typescript) to compile.
FROM node:20-slim AS build
WORKDIR /opt/arbiter
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
COPY workers ./workers
COPY bin ./bin
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

# ---- runtime: only production dependencies and the compiled dist/.
FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /opt/arbiter
COPY --from=build /opt/arbiter/package.json ./
COPY --from=build /opt/arbiter/node_modules ./node_modules
COPY --from=build /opt/arbiter/dist ./dist
COPY --from=build /opt/arbiter/bin ./bin
RUN ln -s /opt/arbiter/bin/arbiter /usr/local/bin/arbiter

# The app. Paths in APP_MODULE are relative to the working directory (or `chdir`).
WORKDIR /app
COPY examples/ ./

# Listen on all interfaces in the container; -w auto sizes from the container's CPU limit
# (cgroup cpu.max / cfs quota / cpuset) and the log says what it found.
ENV ARBITER_BIND=0.0.0.0:8000 \
    ARBITER_WORKERS=auto \
    ARBITER_GRACEFUL_TIMEOUT=30
EXPOSE 8000

# Not root: the node image's unprivileged user.
USER node

# arbiter runs as PID 1: TERM (docker stop, Kubernetes) is a graceful stop, INT/QUIT are
# quick stops, its exit code is the container's, and it reaps its own workers. It does not
# reap orphans it never started: if your app spawns subprocesses that outlive their parent,
# run with `docker run --init` (tini) or add tini here.
STOPSIGNAL SIGTERM
ENTRYPOINT ["arbiter"]
CMD ["hello.js:handler"]
