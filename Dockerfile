# txsim's CLI as an image: `docker run --rm txsim:local <command>` (docker-compose.yml builds and uses it).

# --- build: compile TypeScript with the dev dependencies --------------------------------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: src/ is not here yet, so a lifecycle script that builds (`prepare`) would fail at this step;
# the build runs explicitly below. No dependency needs an install script (all are plain JavaScript).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies, the compiled CLI and the files it reads at run time ----------------------
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
# Read at run time relative to dist/: the schema `txsim setup` applies, and the message contract's JSON Schema.
COPY sql ./sql
COPY schema ./schema
COPY web ./web
# `txsim` on PATH too, for `sh -c 'txsim setup && ...'` in docker-compose.yml.
RUN ln -s /app/bin/txsim /usr/local/bin/txsim
# The CLI writes nothing to disk, so it runs as the image's unprivileged user.
USER node
ENTRYPOINT ["/app/bin/txsim"]
CMD ["--help"]
