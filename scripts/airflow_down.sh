#!/usr/bin/env bash
# `make down`: stop the Airflow components `make up` started, then the FlashArray emulator. Idempotent.
#
# Each component gets SIGTERM by pid; one still alive after 5 s gets SIGTERM again, and so do the
# processes in its session; one still alive after COPYDATA_DOWN_TIMEOUT seconds (default 20) gets
# SIGKILL. Then every process left in the components' sessions gets SIGKILL: the scheduler may hang
# on SIGTERM and its LocalExecutor workers outlive it (airflow3.md section 8). Finally anything still
# carrying our environment marker is killed too (see scripts/lib_procs.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
. "$COPYDATA_ROOT/scripts/lib_procs.sh"
cd "$COPYDATA_ROOT"

TIMEOUT="${COPYDATA_DOWN_TIMEOUT:-20}"
COMPONENTS=(api-server scheduler dag-processor triggerer)
log() { printf '[down] %s\n' "$*" >&2; }

# -- 1. SIGTERM each component by pid ---------------------------------------------------------
declare -A PIDS=()
SIDS=()
for c in "${COMPONENTS[@]}"; do
    pid="$(component_pid "$c")"
    [ -n "$pid" ] || continue
    PIDS[$c]="$pid"
    SIDS+=("$pid")                      # started with setsid: its pid is its children's session id
    kill -TERM "$pid" 2>/dev/null || true
    log "SIGTERM $c (pid $pid)"
done

# -- 2. Wait; after a few seconds signal survivors again ("Signal again if you don't want to wait")
#       together with their session members (LocalExecutor workers the scheduler waits for);
#       after COPYDATA_DOWN_TIMEOUT seconds SIGKILL them ---------------------------------------
any_alive() { local c; for c in "${!PIDS[@]}"; do alive "${PIDS[$c]}" && return 0; done; return 1; }
if [ ${#PIDS[@]} -gt 0 ]; then
    deadline=$((SECONDS + TIMEOUT))
    nudge=$((SECONDS + 5))
    nudged=false
    while any_alive && [ $SECONDS -lt $deadline ]; do
        if ! $nudged && [ $SECONDS -ge $nudge ]; then
            nudged=true
            for c in "${!PIDS[@]}"; do
                pid="${PIDS[$c]}"
                alive "$pid" || continue
                mapfile -t members < <(session_members "$pid" | grep -vxF "$pid")
                log "$c (pid $pid) still runs: SIGTERM again, and to its ${#members[@]} child processes"
                kill -TERM "$pid" "${members[@]}" 2>/dev/null || true
            done
        fi
        sleep 0.5
    done
    for c in "${!PIDS[@]}"; do
        if alive "${PIDS[$c]}"; then
            log "$c (pid ${PIDS[$c]}) still runs after ${TIMEOUT} s: SIGKILL"
            kill -KILL "${PIDS[$c]}" 2>/dev/null || true
        fi
    done
fi

# -- 3. Leftovers: members of those sessions (e.g. LocalExecutor workers), and anything else that
#       carries our marker (a lost pid file, a task process that left its session) -----------------
for _ in 1 2 3 4 5 6 7 8 9 10; do
    mapfile -t left < <({ session_members "${SIDS[@]}"; marked_pids; } | sort -un)
    [ ${#left[@]} -eq 0 ] && break
    log "SIGKILL leftover processes: ${left[*]}"
    kill -KILL "${left[@]}" 2>/dev/null || true
    sleep 0.5
done
mapfile -t left < <({ session_members "${SIDS[@]}"; marked_pids; } | sort -un)
rm -f "$COPYDATA_RUN_DIR"/*.pid
[ ${#left[@]} -eq 0 ] || { log "ERROR: processes survived SIGKILL: ${left[*]}"; exit 1; }
[ ${#PIDS[@]} -eq 0 ] || log "Airflow stopped"

# -- 4. The emulator: stop it and release its loop devices and mounts ---------------------------
if [ -x "$COPYDATA_VENV/bin/copydata" ]; then
    copydata emulator stop 2>&1 | sed 's/^/[down] /' >&2
fi

for port in "$COPYDATA_AIRFLOW_PORT" 8793 8794; do
    if port_busy "$port"; then log "WARNING: port $port is still in use: $(ss -Hltnp "sport = :$port" | head -1)"; fi
done
exit 0
