# shellcheck shell=bash
# Process helpers for scripts/airflow_up.sh and scripts/airflow_down.sh (source after scripts/env.sh).
#
# `make up` starts each component with setsid, so the component's pid is also the session id of all its
# children: api-server workers, LocalExecutor workers, task supervisors and tasks (those call setpgid,
# which keeps the session). Each also gets COPYDATA_AIRFLOW_INSTANCE=$AIRFLOW_HOME in its environment,
# and SPT_NOENV=1 so that setproctitle does not overwrite the environment block (it does by default,
# which would hide the marker in /proc/<pid>/environ).

MARKER="COPYDATA_AIRFLOW_INSTANCE=$AIRFLOW_HOME"

alive() {  # alive pid: exists and is not a zombie
    local state
    [ -n "$1" ] || return 1
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

has_marker() {  # has_marker pid
    { tr '\0' '\n' < "/proc/$1/environ"; } 2>/dev/null | grep -qxF "$MARKER"
}

# component_pid name: the pid in .airflow/run/<name>.pid if it still is our session leader, else "".
component_pid() {
    local pid sid
    pid="$(cat "$COPYDATA_RUN_DIR/$1.pid" 2>/dev/null || true)"
    alive "$pid" || return 0
    sid="$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')"
    [ "$sid" = "$pid" ] || return 0            # a recycled pid, not the session leader we started
    if has_marker "$pid" || grep -qa airflow "/proc/$pid/cmdline" 2>/dev/null; then echo "$pid"; fi
}

# session_members sid...: live pids whose session id is one of the given ones.
session_members() {
    [ $# -gt 0 ] || return 0
    ps -eo pid=,sid=,stat= | awk -v sids=" $* " 'index(sids, " " $2 " ") && $3 !~ /^Z/ { print $1 }'
}

# marked_pids: every live process carrying our marker (even one that left its session).
marked_pids() {
    local d pid
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        [ "$pid" != "$$" ] && [ "$pid" != "${BASHPID:-}" ] || continue
        has_marker "$pid" && alive "$pid" && echo "$pid"
    done
    return 0
}

# port_busy port: something listens on this TCP port.
port_busy() {
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}
