#!/usr/bin/env bash
# Refresh a copydata clone through the Airflow REST API (v2), e.g. from a CI pipeline:
#
#   scripts/rest_clone_refresh.sh APP CLONE [POINT]
#
# Gets a token, triggers copydata__APP__clone_refresh with conf {clone_name, point_in_time, mask}, polls the
# run until it ends, and prints the task's XCom return value (the clone: port, host, point, socket_dir) as
# JSON on stdout. Progress goes to stderr. If the run fails, it prints the end of the failed task's log.
#
#   APP    the application name in the SLA file (lab demo1 -> demo1)
#   CLONE  an existing clone of APP (create it first with copydata__APP__clone)
#   POINT  'latest' (default) or ISO 8601 with a zone, e.g. 2026-11-27T10:15:00Z
#
# Environment:
#   AIRFLOW_URL       default http://127.0.0.1:8080
#   AIRFLOW_USER      default admin
#   AIRFLOW_PASSWORD  default admin
#   AIRFLOW_TOKEN     use this JWT instead of asking /auth/token for one
#   COPYDATA_MASK     true (default, the DAG's default) or false: run the SLA's masking after recovery
#   REFRESH_TIMEOUT   seconds to wait for the run to end (default 1800)
#   POLL_INTERVAL     seconds between polls (default 2)
#   LOG_LINES         lines of the failed task's log to print (default 40)
#
# Exit codes: 0 success; 1 the run failed; 2 usage, unknown DAG or request rejected (e.g. HTTP 400: the DAG's
# params); 3 Airflow unreachable, login failed or unexpected answer; 4 timeout (the run goes on).
# Needs curl and jq. The password and the token never appear on a command line (ps) or in the output.
set -euo pipefail

AIRFLOW_URL="${AIRFLOW_URL:-http://127.0.0.1:8080}"
AIRFLOW_URL="${AIRFLOW_URL%/}"
AIRFLOW_USER="${AIRFLOW_USER:-admin}"
AIRFLOW_PASSWORD="${AIRFLOW_PASSWORD:-admin}"
COPYDATA_MASK="${COPYDATA_MASK:-true}"
REFRESH_TIMEOUT="${REFRESH_TIMEOUT:-1800}"
POLL_INTERVAL="${POLL_INTERVAL:-2}"
LOG_LINES="${LOG_LINES:-40}"
PROG="$(basename "$0")"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { local rc="$1"; shift; log "ERROR: $*"; exit "$rc"; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

case "${1:-}" in -h|--help) usage ;; esac
if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
APP="$1" CLONE="$2" POINT="${3:-latest}"
for tool in curl jq; do
    command -v "$tool" >/dev/null || die 3 "$tool is not installed"
done
case "$COPYDATA_MASK" in true|false) ;; *) die 2 "COPYDATA_MASK must be true or false, not '$COPYDATA_MASK'" ;; esac
[[ "$REFRESH_TIMEOUT" =~ ^[0-9]+$ && "$LOG_LINES" =~ ^[0-9]+$ ]] || die 2 "REFRESH_TIMEOUT and LOG_LINES must be whole numbers"
[[ "$POLL_INTERVAL" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "POLL_INTERVAL must be a number of seconds"

DAG_ID="copydata__${APP}__clone_refresh"
TASK_ID="clone_refresh"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
BODY="$TMP/body"
AUTH="$TMP/auth.curlrc"   # curl config with the Authorization header: keeps the token out of argv

uri() { jq -rn --arg s "$1" '$s | @uri'; }

# api METHOD PATH [JSON]: the body goes to $BODY, the HTTP status to stdout ("000": no answer).
api() {
    local method="$1" path="$2" data="${3:-}"
    local args=(-sS --max-time 30 -o "$BODY" -w '%{http_code}' -X "$method" -H 'Accept: application/json')
    [ -s "$AUTH" ] && args+=(-K "$AUTH")
    if [ -n "$data" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary @-)
        printf '%s' "$data" | curl "${args[@]}" "$AIRFLOW_URL$path" 2>"$TMP/curl.err" || true
    else
        curl "${args[@]}" "$AIRFLOW_URL$path" 2>"$TMP/curl.err" </dev/null || true
    fi
}
detail() {  # the error text of the last answer (FastAPI's {"detail": ...}), else its first 300 bytes
    jq -r 'if (.detail | type) == "string" then (.detail | split("\n\n")[0])
           elif .detail then (.detail | tojson) else tojson end' "$BODY" 2>/dev/null \
        || head -c 300 "$BODY" 2>/dev/null || true
}
unexpected() {  # code what
    [ "$1" = 000 ] && die 3 "$2: no answer from $AIRFLOW_URL ($(tr -d '\n' < "$TMP/curl.err"))"
    die 3 "$2: HTTP $1: $(detail)"
}

# -- token ----------------------------------------------------------------------------------------
if [ -n "${AIRFLOW_TOKEN:-}" ]; then
    TOKEN="$AIRFLOW_TOKEN"
else
    code="$(api POST /auth/token "$(jq -cn --arg u "$AIRFLOW_USER" --arg p "$AIRFLOW_PASSWORD" \
            '{username: $u, password: $p}')")"
    case "$code" in
        200|201) TOKEN="$(jq -r '.access_token // empty' "$BODY")" ;;
        401) die 3 "login as $AIRFLOW_USER refused (HTTP 401): check AIRFLOW_USER / AIRFLOW_PASSWORD" ;;
        *) unexpected "$code" "POST /auth/token" ;;
    esac
    [ -n "$TOKEN" ] || die 3 "POST /auth/token answered without an access_token"
fi
(umask 077 && printf 'header = "Authorization: Bearer %s"\n' "$TOKEN" > "$AUTH")

# -- the DAG exists and is not paused (a run of a paused DAG stays queued) -----------------------------
code="$(api GET "/api/v2/dags/$(uri "$DAG_ID")")"
case "$code" in
    200) ;;
    404) die 2 "DAG $DAG_ID not found: is there an SLA file with application '$APP', and has the DAG processor parsed it?" ;;
    401|403) die 3 "GET /api/v2/dags/$DAG_ID: HTTP $code: $(detail)" ;;
    *) unexpected "$code" "GET /api/v2/dags/$DAG_ID" ;;
esac
if [ "$(jq -r .is_paused "$BODY")" = true ]; then
    log "$DAG_ID is paused: unpausing it (it has no schedule, so this starts nothing by itself)"
    code="$(api PATCH "/api/v2/dags/$(uri "$DAG_ID")" '{"is_paused": false}')"
    [ "$code" = 200 ] || unexpected "$code" "PATCH /api/v2/dags/$DAG_ID"
fi

# -- trigger ---------------------------------------------------------------------------------------
conf="$(jq -cn --arg c "$CLONE" --arg p "$POINT" --argjson m "$COPYDATA_MASK" \
        '{logical_date: null, conf: {clone_name: $c, point_in_time: $p, mask: $m},
          note: "scripts/rest_clone_refresh.sh"}')"
code="$(api POST "/api/v2/dags/$(uri "$DAG_ID")/dagRuns" "$conf")"
case "$code" in
    200) ;;
    400|422) die 2 "trigger rejected (HTTP $code): $(detail)" ;;
    *) unexpected "$code" "POST /api/v2/dags/$DAG_ID/dagRuns" ;;
esac
RUN_ID="$(jq -r .dag_run_id "$BODY")"
RUN_PATH="/api/v2/dags/$(uri "$DAG_ID")/dagRuns/$(uri "$RUN_ID")"
log "triggered $DAG_ID run $RUN_ID (clone $CLONE, point $POINT, mask $COPYDATA_MASK)"

# -- poll ------------------------------------------------------------------------------------------
start=$SECONDS state="" last="" misses=0
while :; do
    code="$(api GET "$RUN_PATH")"
    if [ "$code" = 200 ]; then
        misses=0
        state="$(jq -r .state "$BODY")"
    else  # tolerate a restarting api-server for a while
        misses=$((misses + 1))
        [ $misses -lt 15 ] || unexpected "$code" "GET $RUN_PATH"
    fi
    case "$state" in success|failed) break ;; esac
    if [ "$state" != "$last" ] && [ -n "$state" ]; then
        [ -z "$last" ] || printf '\n' >&2
        printf '%s: %s ' "$PROG" "$state" >&2
        last="$state"
    fi
    if [ $((SECONDS - start)) -ge "$REFRESH_TIMEOUT" ]; then
        printf '\n' >&2
        die 4 "run $RUN_ID is still '$state' after ${REFRESH_TIMEOUT} s; it goes on: $AIRFLOW_URL/dags/$DAG_ID/runs/$(uri "$RUN_ID")"
    fi
    printf '.' >&2
    sleep "$POLL_INTERVAL"
done
[ -z "$last" ] || printf '\n' >&2
log "run $RUN_ID: $state after $((SECONDS - start)) s"

# -- success: the clone, as the task returned it ----------------------------------------------------
if [ "$state" = success ]; then
    code="$(api GET "$RUN_PATH/taskInstances/$TASK_ID/xcomEntries/return_value")"
    [ "$code" = 200 ] || unexpected "$code" "GET the XCom return_value of $TASK_ID"
    jq .value "$BODY"
    exit 0
fi

# -- failure: the end of each failed task's log -------------------------------------------------------
code="$(api GET "$RUN_PATH/taskInstances")"
[ "$code" = 200 ] || unexpected "$code" "GET $RUN_PATH/taskInstances"
jq -r '.task_instances[] | select(.state == "failed") | "\(.task_id) \(.try_number)"' "$BODY" > "$TMP/failed"
[ -s "$TMP/failed" ] || log "no failed task instance (the run may have been marked failed by hand)"
while read -r task try; do
    log "task $task failed (try $try); last $LOG_LINES log lines:"
    code="$(api GET "$RUN_PATH/taskInstances/$(uri "$task")/logs/$try")"
    if [ "$code" != 200 ]; then
        log "could not read the log: HTTP $code: $(detail)"
        continue
    fi
    # Structured log records: time, level, message; for exceptions the type, message and innermost frame.
    jq -r '.content[]? | select(.event != null and (.event | startswith("::") | not))
        | "\((.timestamp // "")[11:19]) \((.level // "") | ascii_upcase) \(.event)",
          (.error_detail[]? | "    \(.exc_type): \(.exc_value)",
                              (.frames[-1]? // empty | "      at \(.filename):\(.lineno) in \(.name)"))' \
        "$BODY" | tail -n "$LOG_LINES" >&2
done < "$TMP/failed"
exit 1
