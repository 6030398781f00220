// The config of the example image (../../Dockerfile): `docker run IMAGE -c /app/arbiter.conf.ts`.
// bind and workers come from the image's ARBITER_BIND and ARBITER_WORKERS (-w auto: the
// container's CPU limit); a command line given to `docker run` overrides them.
import { defineConfig } from 'arbiterd';

export default defineConfig({
  app: 'server.js',
  timeout: 30,
  gracefulTimeout: 25,
  maxRequests: 10_000,
  maxRequestsJitter: 1_000,
});
