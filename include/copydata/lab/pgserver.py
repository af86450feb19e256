"""The lab's PostgreSQL server: initdb, the marked settings block in postgresql.conf, start, pgbench."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..engines.postgres import ARCHIVE_SUBDIR, PostgresEngine
from .common import LabError, LabLayout, chown, run_as

OS_USER = "postgres"
PORT_BASE = 55432
CONF_BEGIN = "# --- copydata lab settings (begin) ---"
CONF_END = "# --- copydata lab settings (end) ---"
PORT_RE = re.compile(r"^port = (\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PgLab(LabLayout):
    @property
    def pgdata(self) -> Path:
        return self.data_mount / "pgdata"

    @property
    def wal_dir(self) -> Path:
        return self.archive_mount / ARCHIVE_SUBDIR

    @property
    def logfile(self) -> Path:
        return self.run_dir / "postgresql.log"

    @property
    def conf(self) -> Path:
        return self.pgdata / "postgresql.conf"


def engine() -> PostgresEngine:
    return PostgresEngine(os_user=OS_USER)


def archive_command(wal_dir: Path) -> str:
    """Copy a segment in under a temporary name, fsync it, rename it, fsync the folder. A segment already
    archived with the same content counts as done (a crash after the rename must not stall archiving);
    different content fails, so nothing is ever overwritten."""
    d = shlex.quote(str(wal_dir))
    return (f"if test -f {d}/%f; then cmp -s %p {d}/%f; "
            f"else cp %p {d}/%f.tmp && sync {d}/%f.tmp && mv {d}/%f.tmp {d}/%f && sync {d}; fi")


def settings(lab: PgLab, port: int) -> dict[str, str]:
    """Setting -> value as written in postgresql.conf (strings already quoted)."""
    def q(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return {"port": str(port), "listen_addresses": q("127.0.0.1"), "unix_socket_directories": q(str(lab.run_dir)),
            "cluster_name": q(lab.name), "timezone": q("UTC"), "log_timezone": q("UTC"),
            "wal_level": "replica", "archive_mode": "on", "archive_command": q(archive_command(lab.wal_dir)),
            "archive_timeout": "60", "track_commit_timestamp": "on", "max_wal_size": "1GB",
            "checkpoint_timeout": "5min", "logging_collector": "off"}


def render_block(values: dict[str, str]) -> str:
    return "\n".join([CONF_BEGIN, *(f"{k} = {v}" for k, v in values.items()), CONF_END]) + "\n"


def current_block(conf: Path) -> str | None:
    text = conf.read_text() if conf.exists() else ""
    if CONF_BEGIN not in text or CONF_END not in text:
        return None
    return text[text.index(CONF_BEGIN): text.index(CONF_END) + len(CONF_END)] + "\n"


def configured_port(conf: Path) -> int | None:
    block = current_block(conf)
    m = PORT_RE.search(block) if block else None
    return int(m.group(1)) if m else None


def write_block(conf: Path, block: str) -> bool:
    """Append (or replace) the marked block. Returns True when the file changed."""
    old = current_block(conf)
    if old == block:
        return False
    text = conf.read_text()
    if old is not None:
        start = text.index(CONF_BEGIN)
        text = text[:start] + text[text.index(CONF_END) + len(CONF_END):].lstrip("\n")
    conf.write_text(text.rstrip("\n") + "\n\n" + block)
    return True


def initdb(lab: PgLab) -> bool:
    """initdb unless PG_VERSION exists. Returns True when it ran."""
    if (lab.pgdata / "PG_VERSION").exists():
        return False
    run_as(OS_USER, [str(engine().bin_dir / "initdb"), "-D", str(lab.pgdata), "-U", OS_USER, "--auth=trust",
                     "--data-checksums", "-E", "UTF8", "--locale=C.UTF-8"], timeout=300)
    return True


def prepare_dirs(lab: PgLab) -> None:
    """The socket/log folder and the WAL archive folder, owned by postgres."""
    lab.run_dir.mkdir(parents=True, exist_ok=True)
    lab.run_dir.chmod(0o755)
    chown(lab.run_dir, OS_USER)
    lab.wal_dir.mkdir(exist_ok=True)
    lab.wal_dir.chmod(0o700)
    chown(lab.wal_dir, OS_USER)


def is_running(lab: PgLab) -> bool:
    return (lab.pgdata / "postmaster.pid").exists() and engine().pg_ctl("-D", str(lab.pgdata), "status").returncode == 0


def start(lab: PgLab, restart: bool = False) -> str:
    """Start the server (or restart it after a settings change). Returns a note."""
    running = is_running(lab)
    if running and not restart:
        return "already running"
    action = "restart" if running else "start"
    proc = engine().pg_ctl("-D", str(lab.pgdata), "-l", str(lab.logfile), "-w", "-t", "120", action, timeout=150)
    if proc.returncode != 0:
        tail = lab.logfile.read_text().splitlines()[-15:] if lab.logfile.exists() else []
        raise LabError(f"pg_ctl {action} failed ({proc.returncode}): {proc.stderr.strip()}\n" + "\n".join(tail))
    return "restarted (settings changed)" if running else "started"


def connect(lab: PgLab, port: int, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=str(lab.run_dir), port=port, user=OS_USER, dbname=dbname, autocommit=True,
                           connect_timeout=10)


def init_pgbench(lab: PgLab, port: int, scale: int) -> str:
    """Database pgbench with `pgbench -i -s scale`, unless it holds pgbench tables already. Returns a note."""
    with connect(lab, port) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'pgbench'").fetchone():
            conn.execute("CREATE DATABASE pgbench")
    with connect(lab, port, "pgbench") as conn:
        if conn.execute("SELECT to_regclass('pgbench_branches')").fetchone()[0]:
            have = conn.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0]
            return f"database pgbench exists (scale {have}); left as is"
    run_as(OS_USER, [str(engine().bin_dir / "pgbench"), "-h", str(lab.run_dir), "-p", str(port), "-U", OS_USER,
                     "-i", "-q", "-s", str(scale), "pgbench"], timeout=3600)
    return f"database pgbench initialised at scale {scale}"
