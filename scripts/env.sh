# shellcheck shell=bash
# The one place that defines the project's environment. Sourced (". scripts/env.sh") by the Makefile
# recipes, scripts/bootstrap.sh, scripts/airflow_up.sh, scripts/airflow_down.sh and .ci/run, so that
# CI, `make test`, `make up` and `make demo` all see the same Airflow home, folders and settings.
#
# Side effect: creates $AIRFLOW_HOME and, once, a long random JWT secret in it (shared by every
# Airflow component; the 24-byte default that airflow.cfg generates is too short).

COPYDATA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export COPYDATA_ROOT

# Where things live: all project-local, so nothing leaks into ~/airflow or ~/.copydata.
export COPYDATA_VENV="$COPYDATA_ROOT/.venv"
export COPYDATA_HOME="$COPYDATA_ROOT/.copydata"
export AIRFLOW_HOME="$COPYDATA_ROOT/.airflow"
export COPYDATA_RUN_DIR="$AIRFLOW_HOME/run"     # pid files of the components `make up` starts
export COPYDATA_LOG_DIR="$AIRFLOW_HOME/logs/components"   # their stdout/stderr
case ":$PATH:" in                               # components spawn `airflow` from PATH
    *":$COPYDATA_VENV/bin:"*) ;;
    *) export PATH="$COPYDATA_VENV/bin:$PATH" ;;
esac

# Airflow core.
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$COPYDATA_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$COPYDATA_ROOT/plugins"
export AIRFLOW__CORE__EXECUTOR=LocalExecutor

# Auth: SimpleAuthManager, one admin user, passwords in a file we write (scripts/bootstrap.sh).
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"

# API server on loopback. Its port and the execution API URL that tasks use must change together
# (docs: airflow3.md section 8), so both derive from COPYDATA_AIRFLOW_PORT.
export COPYDATA_AIRFLOW_PORT="${COPYDATA_AIRFLOW_PORT:-8080}"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$COPYDATA_AIRFLOW_PORT"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$COPYDATA_AIRFLOW_PORT/execution/"
export COPYDATA_AIRFLOW_URL="http://127.0.0.1:$COPYDATA_AIRFLOW_PORT"

# The FlashArray emulator `make up` starts (connection flasharray_default points at it).
export COPYDATA_EMULATOR_PORT="${COPYDATA_EMULATOR_PORT:-18443}"

# Scheduling latency: the default 1 s idle sleep dominates short runs.
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.1

# One long JWT secret, generated once, shared by the api-server, scheduler, dag-processor, triggerer
# and every CLI call.
mkdir -p "$AIRFLOW_HOME"
if [ ! -s "$AIRFLOW_HOME/jwt_secret" ]; then
    (umask 077 && head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$AIRFLOW_HOME/jwt_secret.tmp" \
        && mv "$AIRFLOW_HOME/jwt_secret.tmp" "$AIRFLOW_HOME/jwt_secret")
fi
AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$AIRFLOW_HOME/jwt_secret")"
export AIRFLOW__API_AUTH__JWT_SECRET
