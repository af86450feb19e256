#!/usr/bin/env bash
# Install what copydata needs, idempotently; fast (about a second) when everything is already there.
#
#   scripts/bootstrap.sh                  Debian packages, .venv, Python packages, Airflow metadata DB
#   scripts/bootstrap.sh --python-only    only .venv and the Python packages (enough for `make lint`)
#
# Debian packages are checked with `dpkg -s` and apt runs only when one is missing. The Python install is
# skipped while .venv/.copydata-bootstrap.stamp matches the hash of requirements.txt + pyproject.toml,
# and `airflow db migrate` while .airflow/.migrated matches too (and the SQLite file exists).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$COPYDATA_ROOT"

PYTHON_ONLY=false
[ "${1:-}" = "--python-only" ] && PYTHON_ONLY=true

APT_PACKAGES=(xfsprogs e2fsprogs util-linux postgresql-15 postgresql-contrib mariadb-server mariadb-backup
              fuse3 pgbackrest stunnel4 sysbench curl ca-certificates jq)
START=$SECONDS
log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }

apt_install() {  # apt_install pkg...: install only the missing ones; never start their services
    local missing=() p
    for p in "$@"; do installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}); run as root"
    log "apt-get install ${missing[*]}"
    # The system postgresql/mariadb services must not start: tests and demos run their own instances.
    # policy-rc.d exit 101 makes invoke-rc.d and deb-systemd-invoke skip starting services.
    local guard=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary, from copydata scripts/bootstrap.sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=true
    fi
    local rc=0
    {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    } || rc=$?
    $guard && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || die "apt-get failed ($rc)"
}

# -- 1. Debian packages -------------------------------------------------------------------------
$PYTHON_ONLY || apt_install "${APT_PACKAGES[@]}"

# -- 2. A Python 3.11 outside the venv, and uv -------------------------------------------------
PATH_NO_VENV="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$COPYDATA_VENV/bin" | paste -sd: -)"
is311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
find_python() {
    local c p
    for c in python3 python3.11; do
        p="$(PATH="$PATH_NO_VENV" command -v "$c" 2>/dev/null)" || continue
        is311 "$p" && { "$p" -c 'import sys; print(sys.executable)'; return 0; }
    done
    return 1
}

venv_ok() { [ -x "$COPYDATA_VENV/bin/python" ] && is311 "$COPYDATA_VENV/bin/python"; }
HASH="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
STAMP="$COPYDATA_VENV/.copydata-bootstrap.stamp"

if venv_ok && [ "$(cat "$STAMP" 2>/dev/null)" = "$HASH" ] \
        && [ -x "$COPYDATA_VENV/bin/airflow" ] && [ -x "$COPYDATA_VENV/bin/copydata" ]; then
    :   # Python environment is current
else
    PY="$(find_python)" || { $PYTHON_ONLY && die "no Python 3.11 found"; apt_install python3.11; PY=/usr/bin/python3.11; }
    if PATH="$PATH_NO_VENV" command -v uv >/dev/null 2>&1; then
        UV=("$(PATH="$PATH_NO_VENV" command -v uv)")
    else
        if ! "$PY" -m uv --version >/dev/null 2>&1; then
            log "installing uv"
            "$PY" -m pip --version >/dev/null 2>&1 || apt_install python3-pip
            # Debian's own python3 is "externally managed" (PEP 668); as root, pip then installs to /usr/local.
            "$PY" -m pip install -q uv 2>/dev/null || "$PY" -m pip install -q --break-system-packages uv
        fi
        UV=("$PY" -m uv)
    fi
    if ! venv_ok; then
        log "creating .venv with $PY"
        rm -rf "$COPYDATA_VENV"
        "${UV[@]}" venv -q "$COPYDATA_VENV" --python "$PY"
    fi
    log "installing requirements.txt and copydata (editable) into .venv"
    rm -f "$STAMP"
    "${UV[@]}" pip install -q --python "$COPYDATA_VENV/bin/python" --compile-bytecode -r requirements.txt
    "${UV[@]}" pip install -q --python "$COPYDATA_VENV/bin/python" --compile-bytecode --no-deps -e .
    printf '%s\n' "$HASH" > "$STAMP"
fi

$PYTHON_ONLY && { log "python environment ready ($((SECONDS - START)) s)"; exit 0; }

# -- 3. Project folders, admin password file, Airflow metadata DB -------------------------------
mkdir -p dags plugins "$COPYDATA_HOME" "$COPYDATA_RUN_DIR" "$COPYDATA_LOG_DIR"

PWFILE="$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
if [ -n "${COPYDATA_ADMIN_PASSWORD:-}" ] || [ ! -s "$PWFILE" ]; then
    (umask 077 && "$COPYDATA_VENV/bin/python" -c \
        'import json, os, sys; json.dump({"admin": os.environ.get("COPYDATA_ADMIN_PASSWORD") or "admin"}, sys.stdout)' \
        > "$PWFILE")
fi

DB_KEY="$(sha256sum < requirements.txt | cut -d' ' -f1) ${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite}"
DB_STAMP="$AIRFLOW_HOME/.migrated"
if [ "$(cat "$DB_STAMP" 2>/dev/null)" = "$DB_KEY" ] \
        && { [ -n "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ] || [ -s "$AIRFLOW_HOME/airflow.db" ]; }; then
    :   # metadata DB is migrated for this Airflow
else
    log "airflow db migrate (AIRFLOW_HOME=$AIRFLOW_HOME)"
    MIGRATE_LOG="$COPYDATA_LOG_DIR/db-migrate.log"
    if ! airflow db migrate > "$MIGRATE_LOG" 2>&1; then
        tail -n 40 "$MIGRATE_LOG" >&2
        die "airflow db migrate failed; full log: $MIGRATE_LOG"
    fi
    printf '%s\n' "$DB_KEY" > "$DB_STAMP"
fi

log "ready in $((SECONDS - START)) s"
