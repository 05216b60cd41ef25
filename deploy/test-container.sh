#!/usr/bin/env bash
# `make test-container`: the image and the compose file, tested as a deployment would use them.
#
# 1. a base image made here (deploy/base-image.sh: mmdebstrap + podman import; no registry is reachable)
# 2. hadolint on both Containerfiles
# 3. the image, built offline (--network none) from build/wheelhouse, the wheelhouse the wheel test uses
# 4. the image itself: non-root, tini as PID 1, HEALTHCHECK kept, no compiler, no pip cache, no secret
# 5. `data` + `train` + `api` in containers on one volume: /health, /ready, one /predict, a write without
#    the key refused, `podman healthcheck run`, a clean stop
# 6. compose.yaml (+ deploy/compose.local-data.yaml): init, db, api, dashboard and ui; the three ports answer,
#    each refuses a request without its key or token, the api reaches the db by name
#
# Everything runs in a private podman store under a temporary folder (its own containers.conf, storage and
# network configuration), so nothing outside it is touched and everything goes when the script ends, passed
# or failed (KEEP=1 keeps the folder for a look). Needs root, podman, runc, mmdebstrap and the venv's
# podman-compose and hadolint (make install); MUSHROOM_DATA names the dataset file (nothing is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="${VENV:-$ROOT/.venv}/bin"
WHEELHOUSE="${WHEELHOUSE:-$ROOT/build/wheelhouse}"
: "${MUSHROOM_DATA:?set MUSHROOM_DATA to a local mushrooms.csv (the containers get it read-only)}"
DATA_FILE="$(realpath "$MUSHROOM_DATA")"
for tool in podman runc mmdebstrap curl "$BIN/podman-compose" "$BIN/hadolint"; do
  command -v "$tool" >/dev/null || { echo "test-container: $tool is missing (apt-get install -y podman runc \
mmdebstrap curl; make install)" >&2; exit 2; }
done
[ -n "$(ls "$WHEELHOUSE"/*.whl 2>/dev/null)" ] || { echo "test-container: no wheels in $WHEELHOUSE (make wheelhouse)" >&2; exit 2; }

work="$(mktemp -d /tmp/mushroom-container.XXXXXX)"
project="mushroomci$$"
image="localhost/mushroom-workbench:ci-$$"
db_image="localhost/mushroom-workbench-db:ci-$$"
base="localhost/mushroom-base:ci-$$"
started=$SECONDS
passed=0

# ------------------------------------------------------------------ a private podman
nofile=$(( $(ulimit -Hn) / 2 )); [ "$nofile" -le 16384 ] || nofile=16384
nproc=$(( $(ulimit -Hu) / 2 )); [ "$nproc" -le 32768 ] || nproc=32768
mkdir -p "$work/storage" "$work/run" "$work/tmp" "$work/networks"
cat > "$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
tmp_dir = "$work/tmp"
events_logger = "file"
events_logfile_path = "$work/events.log"

[network]
network_config_dir = "$work/networks"
EOF
cat > "$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run"
EOF
export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf"
export PODMAN_COMPOSE_WARNING_LOGS=false

say() { printf '[%4ds] %s\n' $(( SECONDS - started )) "$*"; }
ok() { passed=$(( passed + 1 )); say "ok: $*"; }
fail() { say "FAILED: $*"; exit 1; }

compose() {
  "$BIN/podman-compose" -p "$project" -f compose.yaml -f deploy/compose.local-data.yaml -f "$work/compose.test.yaml" "$@"
}

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    for c in $(podman ps -a --format '{{.Names}}' 2>/dev/null); do
      echo "---- last lines of $c"; podman logs --tail 30 "$c" 2>&1 | grep -v 'systemd connection'
    done
  fi
  say "cleaning up: every container, volume, network and image of this run, then $work"
  if [ -n "$(podman ps -aq 2>/dev/null)" ]; then
    [ -f "$work/compose.test.yaml" ] && compose down -v -t 5 >/dev/null 2>&1
    podman rm -af -t 5 >/dev/null 2>&1
  fi
  podman volume rm -af >/dev/null 2>&1
  podman network prune -f >/dev/null 2>&1  # the bridges and firewall rules live in the kernel: removed here
  # the images go with the private store below (`podman rmi` took ~30 s an image here, rm -rf seconds)
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r umount -l 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
  say "cleaned up"
  echo "the container stage took $(( SECONDS - started )) s"
  if [ "$rc" -eq 0 ]; then echo "container: $passed passed, 0 failed"; else echo "container: $passed passed, 1 failed"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$BIN/python" -c 'from mushroom_lib.core.ports import free_port; print(free_port())'; }
secret() { "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# wait_for URL [seconds]: until URL answers any HTTP status, at most that long (default 120)
wait_for() {
  local deadline=$(( SECONDS + ${2:-120} ))
  until curl -s -o /dev/null --max-time 5 "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$@"; }
# wait_ok URL SECONDS [curl options]: until URL answers 200, at most that long
wait_ok() {
  local url=$1 deadline=$(( SECONDS + $2 ))
  shift 2
  until [ "$(status_of "$@" "$url")" = 200 ]; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# ------------------------------------------------------------------ 1-2: base, lint
say "base image (mmdebstrap bookworm minbase + python3, tini) and hadolint"
BASE_TAR="${BASE_TAR:-}" deploy/base-image.sh "$base" >/dev/null
"$BIN/hadolint" Containerfile deploy/postgres/Containerfile || fail "hadolint found problems"
ok "base image $base made locally; hadolint passes both Containerfiles"

# ------------------------------------------------------------------ 3: the image, offline
say "building the image offline from $WHEELHOUSE"
t0=$SECONDS
podman build --quiet --layers=false --format docker --network none --build-arg BASE="$base" \
  --build-arg PIP_INSTALL_ARGS=--no-index -t "$image" -f Containerfile . >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; fail "the image did not build"; }
build_s=$(( SECONDS - t0 ))
size_mb=$(( $(podman image inspect "$image" --format '{{.Size}}') / 1000000 ))
ok "image built offline in ${build_s} s (cold: no layer cache), ${size_mb} MB"

# ------------------------------------------------------------------ 4: what is in it
[ "$(podman image inspect "$image" --format '{{.Config.User}}')" = "10001:10001" ] || fail "the image runs as root"
podman image inspect "$image" --format '{{json .Config.Healthcheck}}' | grep -q mushroom-healthcheck \
  || fail "the HEALTHCHECK was dropped (build with --format docker)"
podman image inspect "$image" --format '{{json .Config.Entrypoint}}' | grep -q tini || fail "tini is not the entrypoint"
podman image inspect "$image" --format '{{json .Config.Volumes}}' | grep -q /home/app/work || fail "the home is no volume"
if podman image inspect "$image" --format '{{json .Config.Env}}' | grep -Eiq '(KEY|TOKEN|PASSWORD|SECRET)='; then
  fail "the image's environment holds a secret"
fi
podman run --rm --health-cmd none --entrypoint /bin/sh "$image" -c '
  for c in gcc cc g++ make; do if command -v "$c" >/dev/null; then echo "compiler $c in the image"; exit 1; fi; done
  for d in /root/.cache/pip /home/app/.cache/pip /wheels /src /opt/build; do
    if [ -e "$d" ]; then echo "$d is in the image"; exit 1; fi
  done
  if [ -d /opt/venv/lib/python3.11/site-packages/pandas/tests ]; then echo "pandas tests are in the image"; exit 1; fi
  dask worker --help >/dev/null || { echo "no dask worker in the image"; exit 1; }
  [ "$(id -u)" = 10001 ] && [ -w /home/app/work ]' || fail "the image holds what it should not"
out="$(podman run --rm --health-cmd none "$image" api --host 0.0.0.0 2>&1)" && fail "the API listened beyond loopback without a key"
echo "$out" | grep -q "without a key" || fail "the API refused without the sentence: $out"
ok "non-root (10001), tini entrypoint, HEALTHCHECK kept, home volume, dask worker; no compiler, pip cache, sources or secrets"

# ------------------------------------------------------------------ 5: data, train, api on one volume
podman volume create "$project-home" >/dev/null
run1() { podman run --rm --health-cmd none -v "$project-home:/home/app/work" "$@"; }
run1 -v "$DATA_FILE:/srv/mushrooms.csv:ro" -e MUSHROOM_DATA=/srv/mushrooms.csv "$image" data >/dev/null \
  || fail "mushroom data failed in the container"
run1 "$image" train | grep -q "(champion)" || fail "mushroom train did not make a champion"
ok "mushroom data and mushroom train in containers on one named volume"

api_port=$(free_port)
key=$(secret)
podman run -d --name "$project-api" -v "$project-home:/home/app/work" -e MUSHROOM_API_KEY="$key" \
  -p "127.0.0.1:$api_port:8080" "$image" >/dev/null 2>&1
wait_for "http://127.0.0.1:$api_port/health" 120 || fail "the API never answered /health"
curl -fs "http://127.0.0.1:$api_port/health" | grep -q alive || fail "/health is not alive"
curl -fs "http://127.0.0.1:$api_port/ready" | grep -q '"model_version":"v0001"' || fail "/ready does not name v0001"
row='{"rows": [{"cap-shape": "x", "cap-surface": "s", "cap-color": "n", "bruises": "t", "odor": "p",
  "gill-attachment": "f", "gill-spacing": "c", "gill-size": "n", "gill-color": "k", "stalk-shape": "e",
  "stalk-root": "e", "stalk-surface-above-ring": "s", "stalk-surface-below-ring": "s",
  "stalk-color-above-ring": "w", "stalk-color-below-ring": "w", "veil-type": "p", "veil-color": "w",
  "ring-number": "o", "ring-type": "p", "spore-print-color": "k", "population": "s", "habitat": "u"}]}'
curl -fs -X POST "http://127.0.0.1:$api_port/predict" -H 'Content-Type: application/json' -d "$row" \
  | grep -q '"prediction":"poisonous"' || fail "/predict did not call the odor=p mushroom poisonous"
[ "$(status_of -X POST "http://127.0.0.1:$api_port/models/rollback")" = 401 ] || fail "a write without the key was not 401"
podman healthcheck run "$project-api" >/dev/null 2>&1 || fail "podman healthcheck run says unhealthy"
podman exec "$project-api" sh -c 'tr "\0" " " < /proc/1/cmdline' | grep -q '^tini' || fail "PID 1 is not tini"
ok "api container: /health, /ready v0001, /predict poisonous, write without key 401, healthy, tini PID 1"
podman stop -t 30 "$project-api" >/dev/null 2>&1
podman logs "$project-api" 2>&1 | grep -q "Finished server process" || fail "the API did not shut down cleanly on SIGTERM"
podman rm "$project-api" >/dev/null 2>&1
ok "the API stops cleanly on SIGTERM (graceful shutdown through tini)"

# ------------------------------------------------------------------ 6: compose
say "db image from the same base (Debian's postgresql)"
podman build --quiet --layers=false --format docker --build-arg BASE="$base" -t "$db_image" deploy/postgres \
  >"$work/db-build.log" 2>&1 || { tail -20 "$work/db-build.log"; fail "the db image did not build"; }
ok "db image built from the local base"

export WORKBENCH_IMAGE="$image" WORKBENCH_DB_IMAGE="$db_image" WORKBENCH_DATA_FILE="$DATA_FILE"
export API_PORT="$(free_port)" DASHBOARD_PORT="$(free_port)" UI_PORT="$(free_port)" API_WORKERS=2
export MUSHROOM_API_KEY="$(secret)" MUSHROOM_DASHBOARD_TOKEN="$(secret)" MUSHROOM_UI_TOKEN="$(secret)"
export POSTGRES_PASSWORD="$(secret)"
# a small dashboard on this shared 2-core machine (the defaults size it from the memory available)
cat > "$work/compose.test.yaml" <<EOF
services:
  dashboard:
    environment:
      MUSHROOM_DASHBOARD_POOL: "1"
      MUSHROOM_DASHBOARD_MAX_KERNELS: "4"
EOF
say "podman compose up (init, db, api, dashboard, ui)"
compose up -d >"$work/compose-up.log" 2>&1 || { tail -30 "$work/compose-up.log"; fail "compose up failed"; }
deadline=$(( SECONDS + 180 ))
until [ "$(podman inspect "${project}_init_1" --format '{{.State.Status}}' 2>/dev/null)" = exited ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "init did not finish in 180 s"
  sleep 1
done
[ "$(podman inspect "${project}_init_1" --format '{{.State.ExitCode}}')" = 0 ] || fail "init failed"
ok "compose up: init (data + first training) finished"

wait_for "http://127.0.0.1:$API_PORT/health" 120 || fail "api :$API_PORT never answered"
curl -fs "http://127.0.0.1:$API_PORT/ready" | grep -q '"model_version":"v0001"' || fail "api /ready does not name v0001"
[ "$(status_of -X POST "http://127.0.0.1:$API_PORT/models/rollback")" = 401 ] || fail "api write without key not 401"
ok "api on :$API_PORT (8080 in the container): /ready v0001, writes need the key"

wait_for "http://127.0.0.1:$DASHBOARD_PORT/" 180 || fail "dashboard :$DASHBOARD_PORT never answered"
code=$(curl -s -o "$work/refused.html" -w '%{http_code}' --max-time 60 "http://127.0.0.1:$DASHBOARD_PORT/")
{ [ "$code" = 302 ] || [ "$code" = 403 ]; } && ! grep -q "mushroom-first-upload" "$work/refused.html" \
  || fail "the dashboard answered $code without its token"
curl -fsL --max-time 120 -c "$work/dash.jar" -b "$work/dash.jar" -o "$work/page.html" \
  "http://127.0.0.1:$DASHBOARD_PORT/?token=$MUSHROOM_DASHBOARD_TOKEN" || fail "the dashboard page did not load with its token"
grep -q "mushroom-first-upload" "$work/page.html" || fail "the dashboard page is not the workbench's"
ok "dashboard on :$DASHBOARD_PORT (8081): refused without the token ($code), the page with it"

# the proxy answers at once; Evidently behind it a few seconds later (502 until then)
wait_ok "http://127.0.0.1:$UI_PORT/api/version" 120 -H "Authorization: Bearer $MUSHROOM_UI_TOKEN" \
  || fail "ui :$UI_PORT never answered with Evidently behind it"
code=$(status_of "http://127.0.0.1:$UI_PORT/")
[ "$code" = 401 ] || [ "$code" = 403 ] || fail "the monitoring UI answered $code without its token"
[ "$(status_of -L -c "$work/ui.jar" -b "$work/ui.jar" "http://127.0.0.1:$UI_PORT/?token=$MUSHROOM_UI_TOKEN")" = 200 ] \
  || fail "the UI refused its token"
[ "$(status_of -H "Authorization: Bearer $MUSHROOM_UI_TOKEN" "http://127.0.0.1:$UI_PORT/api/projects")" = 200 ] \
  || fail "the UI's API refused the token"
ok "ui on :$UI_PORT (8082): refused without the token, 200 with it"

podman exec "${project}_db_1" pg_isready -h 127.0.0.1 -q || fail "the db is not ready"
podman exec "${project}_api_1" python -c 'import socket; socket.create_connection(("db", 5432), timeout=10)' \
  || fail "the api cannot reach db:5432"
ok "db: PostgreSQL ready; the api container reaches db:5432 by name"

compose down -v -t 20 >"$work/compose-down.log" 2>&1 || fail "compose down failed"
[ -z "$(podman ps -aq)" ] || fail "containers left after compose down"
ok "compose down -v removed the services and volumes"
say "cold build ${build_s} s, image ${size_mb} MB"
