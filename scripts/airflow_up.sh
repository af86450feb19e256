#!/usr/bin/env bash
# `make up`: the FlashArray emulator, connection flasharray_default, and Airflow 3 (api-server, scheduler,
# dag-processor, triggerer; LocalExecutor, SQLite, SimpleAuthManager) in the background. Idempotent:
# components that already run (per their pid file) are left alone. Run scripts/bootstrap.sh first.
#
#   COPYDATA_UP_TIMEOUT     seconds to wait for /api/v2/monitor/health (default 180)
#   COPYDATA_AIRFLOW_PORT   api-server port (default 8080; see scripts/env.sh)
#   COPYDATA_EMULATOR_PORT  emulator port (default 18443; see scripts/env.sh)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
. "$COPYDATA_ROOT/scripts/lib_procs.sh"
cd "$COPYDATA_ROOT"

TIMEOUT="${COPYDATA_UP_TIMEOUT:-180}"
COMPONENTS=(api-server scheduler dag-processor triggerer)
START=$SECONDS
START_ISO="$(date -u +%Y-%m-%dT%H:%M:%S)"
log() { printf '[up] %s\n' "$*" >&2; }

mkdir -p "$COPYDATA_RUN_DIR" "$COPYDATA_LOG_DIR"
[ -x "$COPYDATA_VENV/bin/airflow" ] || { log "ERROR: .venv is missing; run make bootstrap"; exit 1; }

declare -A LOG_OFFSET=()   # where this start's output begins in each component log
fail() {  # fail message: show what the components logged (this start only), stop everything, exit 1
    log "ERROR: $*"
    local c f
    for c in "${COMPONENTS[@]}"; do
        f="$COPYDATA_LOG_DIR/$c.log"
        [ -n "${LOG_OFFSET[$c]:-}" ] && [ -s "$f" ] || continue   # only what this run started
        printf '\n----- last lines of %s -----\n' "$f" >&2
        tail -c +$(( ${LOG_OFFSET[$c]:-0} + 1 )) "$f" | tail -n 25 >&2
    done
    printf '\n' >&2
    log "stopping what was started (logs stay in $COPYDATA_LOG_DIR)"
    "$COPYDATA_ROOT/scripts/airflow_down.sh" >&2 || true
    exit 1
}

# -- 1. FlashArray emulator (returns the running one if there is one) ---------------------------
log "starting the FlashArray emulator (state: $COPYDATA_HOME/emulator)"
if ! copydata emulator status >/dev/null 2>&1 && port_busy "$COPYDATA_EMULATOR_PORT"; then
    fail "port $COPYDATA_EMULATOR_PORT (for the emulator) is already in use by another process:" \
         "$(ss -Hltnp "sport = :$COPYDATA_EMULATOR_PORT" | head -1)" \
         "(set COPYDATA_EMULATOR_PORT to use another port)"
fi
EMU="$(copydata emulator serve --detach --json --port "$COPYDATA_EMULATOR_PORT")" || fail "the emulator did not start; see $COPYDATA_HOME/emulator/emulator.log"
EMU_TARGET="$(jq -r .target <<<"$EMU")"
EMU_TOKEN="$(jq -r .api_token <<<"$EMU")"
EMU_CA="$(jq -r .ca_file <<<"$EMU")"
EMU_URL="$(jq -r .url <<<"$EMU")"
EMU_DEVICES="$(jq -r .devices <<<"$EMU")"
LAB_HOST="$(python -c "from copydata.lab.common import lab_host; print(lab_host())")"

# -- 2. Connection flasharray_default (delete + add, so a new token or CA is picked up) ----------
log "registering connection flasharray_default -> $EMU_TARGET"
airflow connections delete flasharray_default >/dev/null 2>&1 || true
airflow connections add flasharray_default --conn-type flasharray --conn-host "${EMU_TARGET%:*}" \
    --conn-port "${EMU_TARGET##*:}" --conn-password "$EMU_TOKEN" \
    --conn-extra "$(jq -cn --arg ca "$EMU_CA" --arg dev "$EMU_DEVICES" --arg host "$LAB_HOST" \
        '{ca_file: $ca, verify_tls: true, devices_dir: $dev, host_name: $host}')" >/dev/null \
    || fail "airflow connections add flasharray_default failed"

# -- 3. Airflow components, each in its own session, pid in .airflow/run/<name>.pid -------------
declare -A PORT_OF=([api-server]="$COPYDATA_AIRFLOW_PORT" [scheduler]=8793 [triggerer]=8794)
TO_START=()
for c in "${COMPONENTS[@]}"; do
    pid="$(component_pid "$c")"
    if [ -n "$pid" ]; then
        log "$c already runs (pid $pid)"
        continue
    fi
    port="${PORT_OF[$c]:-}"
    if [ -n "$port" ] && port_busy "$port"; then
        fail "port $port (for $c) is already in use: $(ss -Hltnp "sport = :$port" | head -1)"
    fi
    TO_START+=("$c")
done
for c in "${TO_START[@]}"; do
    args=("$c")
    [ "$c" = api-server ] && args+=(--host 127.0.0.1 --port "$COPYDATA_AIRFLOW_PORT")
    LOG_OFFSET[$c]="$(stat -c %s "$COPYDATA_LOG_DIR/$c.log" 2>/dev/null || echo 0)"
    printf '\n===== %s: airflow %s =====\n' "$(date -Is)" "${args[*]}" >> "$COPYDATA_LOG_DIR/$c.log"
    # setsid: the pid is the session id of all its children. The marker variable is inherited by
    # every child too (SPT_NOENV=1 keeps setproctitle from overwriting it); see scripts/lib_procs.sh.
    COPYDATA_AIRFLOW_INSTANCE="$AIRFLOW_HOME" SPT_NOENV=1 setsid airflow "${args[@]}" \
        < /dev/null >> "$COPYDATA_LOG_DIR/$c.log" 2>&1 &
    echo $! > "$COPYDATA_RUN_DIR/$c.pid"
    log "started $c (pid $!)"
done

# -- 4. Wait for /api/v2/monitor/health --------------------------------------------------------
log "waiting for $COPYDATA_AIRFLOW_URL/api/v2/monitor/health (timeout ${TIMEOUT} s)"
deadline=$((SECONDS + TIMEOUT))
health=""
while :; do
    health="$(curl -fsS --max-time 3 "$COPYDATA_AIRFLOW_URL/api/v2/monitor/health" 2>/dev/null || true)"
    # healthy, with heartbeats from after this script started (not a killed scheduler's last ones)
    if [ -n "$health" ] && jq -e --arg t "$START_ISO" '
            ([.metadatabase.status, .scheduler.status, .triggerer.status, .dag_processor.status]
                | all(. == "healthy"))
            and ([.scheduler.latest_scheduler_heartbeat, .triggerer.latest_triggerer_heartbeat,
                  .dag_processor.latest_dag_processor_heartbeat] | all(. != null and . >= $t))' \
            <<<"$health" >/dev/null 2>&1; then
        break
    fi
    for c in "${COMPONENTS[@]}"; do
        [ -n "$(component_pid "$c")" ] || fail "airflow $c exited during start-up"
    done
    [ $SECONDS -lt $deadline ] || fail "Airflow was not healthy after ${TIMEOUT} s; last health: ${health:-no answer}"
    sleep 1
done

# -- 5. Pool flasharray_api (4 slots) through the REST API, if missing ---------------------------
ADMIN_PW="$(jq -r .admin "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")"
TOKEN="$(curl -fsS -X POST "$COPYDATA_AIRFLOW_URL/auth/token" -H 'Content-Type: application/json' \
         -d "$(jq -cn --arg p "$ADMIN_PW" '{username: "admin", password: $p}')" | jq -r .access_token)" \
    || fail "could not get a token for admin from $COPYDATA_AIRFLOW_URL/auth/token"
code="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        "$COPYDATA_AIRFLOW_URL/api/v2/pools/flasharray_api")"
if [ "$code" = 404 ]; then
    curl -fsS -o /dev/null -X POST "$COPYDATA_AIRFLOW_URL/api/v2/pools" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' \
        -d '{"name": "flasharray_api", "slots": 4, "description": "FlashArray REST API concurrency"}' \
        || fail "could not create pool flasharray_api"
    log "created pool flasharray_api (4 slots)"
elif [ "$code" != 200 ]; then
    fail "GET /api/v2/pools/flasharray_api answered $code"
fi

if [ "$ADMIN_PW" = admin ]; then LOGIN="admin / admin"; else LOGIN="admin / (password in $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)"; fi
cat <<EOF

Airflow is up after $((SECONDS - START)) s (LocalExecutor, SQLite in $AIRFLOW_HOME).
  UI and REST API : $COPYDATA_AIRFLOW_URL   login: $LOGIN
  Token           : curl -X POST $COPYDATA_AIRFLOW_URL/auth/token -H 'Content-Type: application/json' \\
                         -d '{"username":"admin","password":"..."}'
  Emulator        : $EMU_URL  (connection flasharray_default, pool flasharray_api)
  DAGs / plugins  : $AIRFLOW__CORE__DAGS_FOLDER  /  $AIRFLOW__CORE__PLUGINS_FOLDER
  Logs            : $COPYDATA_LOG_DIR/<component>.log   pids: $COPYDATA_RUN_DIR/
  Stop            : make down
EOF
