"""The lab's MariaDB server: its option file, mariadb-install-db, start and stop, the copydata user, sysbench.

The server runs from Debian's packages with its own option file (`<run>/my.cnf`, read with --defaults-file so
/etc/mysql is never consulted), its own socket, pid file and error log in `<run>`, and its binlogs inside the
datadir under the relative basename `mariadb-bin` (so the index holds `./mariadb-bin.NNNNNN` and a clone mounted
elsewhere never points at the source's files). Started as root, mariadbd drops to `user=mysql` itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import LabError, LabLayout, chown

OS_USER = "mysql"
PORT_BASE = 53306
DATA_SUBDIR = "mysql"  # the datadir, relative to the data mount (the SLA's data_directory)
ARCHIVE_SUBDIR = "binlog"  # the binlog archive, relative to the archive mount
BINLOG_BASENAME = "mariadb-bin"  # relative: the server's binlogs stay inside the datadir
DB_USER = "copydata"
DB_USER_HOSTS = ("127.0.0.1", "localhost")
PORT_RE = re.compile(r"^port\s*=\s*(\d+)\s*$", re.MULTILINE)
HEADER = "# Written by `copydata lab mariadb create`; a new create rewrites it (and restarts the server).\n"


@dataclass(frozen=True)
class MyLab(LabLayout):
    @property
    def datadir(self) -> Path:
        return self.data_mount / DATA_SUBDIR

    @property
    def binlog_archive(self) -> Path:
        return self.archive_mount / ARCHIVE_SUBDIR

    @property
    def cnf(self) -> Path:
        return self.run_dir / "my.cnf"

    @property
    def socket(self) -> Path:
        return self.run_dir / "mariadb.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "mariadbd.pid"

    @property
    def logfile(self) -> Path:
        return self.run_dir / "mariadbd.err"

    @property
    def password_file(self) -> Path:
        return self.run_dir / f"{DB_USER}.pw"


@dataclass(frozen=True)
class ClientArgs:
    """How to reach a lab's server as the copydata user, over TCP or its socket."""

    socket: Path
    host: str
    port: int
    user: str
    password: str = field(repr=False)

    def tcp(self) -> dict:
        """Keyword arguments for mysql.connector / PyMySQL / mariadb connect() over TCP."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password}

    def unix(self) -> dict:
        """The same over the socket."""
        return {"unix_socket": str(self.socket), "user": self.user, "password": self.password}

    def cli(self, *args: str, tcp: bool = False) -> list[str]:
        """A `mariadb` client command; run it with env=cli_env() (the password travels in MYSQL_PWD)."""
        where = [f"--host={self.host}", f"--port={self.port}", "--protocol=TCP"] if tcp else [f"--socket={self.socket}"]
        return [binary("mariadb"), "--no-defaults", *where, f"--user={self.user}", *args]

    def cli_env(self) -> dict[str, str]:
        return {**os.environ, "MYSQL_PWD": self.password}


def binary(name: str) -> str:
    """A MariaDB program from PATH or /usr/sbin, /usr/bin (mariadbd lives in /usr/sbin, often not on PATH)."""
    found = shutil.which(name) or next((f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin")
                                        if os.access(f"{d}/{name}", os.X_OK)), None)
    if not found:
        raise LabError(f"{name} not found: install MariaDB 10.11+ (apt-get install mariadb-server mariadb-client)")
    return found


# -- option file ----------------------------------------------------------------------------
def settings(lab: MyLab, port: int) -> dict[str, str]:
    """[mariadbd] option -> value, as written in my.cnf."""
    return {"user": OS_USER, "datadir": str(lab.datadir), "socket": str(lab.socket), "port": str(port),
            "bind-address": "127.0.0.1", "pid-file": str(lab.pidfile), "log-error": str(lab.logfile),
            "default-time-zone": "'+00:00'", "server_id": "1", "log_bin": BINLOG_BASENAME, "binlog_format": "ROW",
            "sync_binlog": "1", "innodb_flush_log_at_trx_commit": "1", "innodb_buffer_pool_size": "128M",
            "innodb_log_file_size": "48M", "skip-name-resolve": "ON"}


def render_cnf(lab: MyLab, port: int) -> str:
    lines = [HEADER, "[client]", f"socket={lab.socket}", "", "[mariadbd]"]
    lines += [f"{k}={v}" for k, v in settings(lab, port).items()]
    return "\n".join(lines) + "\n"


def configured_port(cnf: Path) -> int | None:
    m = PORT_RE.search(cnf.read_text()) if cnf.exists() else None
    return int(m.group(1)) if m else None


def write_cnf(cnf: Path, text: str) -> bool:
    """Write the option file when its content differs. Returns True when it changed."""
    if cnf.exists() and cnf.read_text() == text:
        return False
    tmp = cnf.with_suffix(".cnf.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(cnf)
    return True


# -- folders and initialisation ---------------------------------------------------------------
def prepare_dirs(lab: MyLab) -> None:
    """The run folder (socket, pid file, error log) and the binlog archive folder, owned by mysql."""
    lab.run_dir.mkdir(parents=True, exist_ok=True)
    lab.run_dir.chmod(0o755)
    chown(lab.run_dir, OS_USER)
    lab.binlog_archive.mkdir(exist_ok=True)
    lab.binlog_archive.chmod(0o700)
    chown(lab.binlog_archive, OS_USER)


def initialised(lab: MyLab) -> bool:
    return (lab.datadir / "mysql" / "global_priv.frm").exists()


def install_db(lab: MyLab) -> bool:
    """mariadb-install-db unless the system tables exist. Returns True when it ran."""
    if initialised(lab):
        return False
    proc = subprocess.run([binary("mariadb-install-db"), f"--defaults-file={lab.cnf}", f"--user={OS_USER}",
                           f"--datadir={lab.datadir}", "--auth-root-authentication-method=normal", "--skip-test-db"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not initialised(lab):
        raise LabError(f"mariadb-install-db exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    for path in [lab.datadir, *lab.datadir.rglob("*")]:  # it leaves a few files to root (mysql_upgrade_info)
        chown(path, OS_USER)
    return True


# -- the server process ---------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """True while pid runs (a zombie, which has exited, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def server_pid(lab: MyLab) -> int | None:
    """The pid of this lab's mariadbd (from its pid file, checked against /proc), or None."""
    try:
        pid = int(lab.pidfile.read_text().strip())
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if f"--defaults-file={lab.cnf}".encode() in args and _alive(pid) else None


def is_running(lab: MyLab) -> bool:
    return server_pid(lab) is not None


def _ping(lab: MyLab) -> bool:
    proc = subprocess.run([binary("mariadb-admin"), f"--defaults-file={lab.cnf}", "--connect-timeout=2", "ping"],
                          capture_output=True, text=True, timeout=30)
    return proc.returncode == 0


def _log_tail(lab: MyLab, lines: int = 15) -> str:
    return "\n".join(lab.logfile.read_text(errors="replace").splitlines()[-lines:]) if lab.logfile.exists() else ""


def start(lab: MyLab, restart: bool = False, timeout: float = 120) -> str:
    """Start mariadbd detached in its own session (or restart it after a change of my.cnf). Returns a note."""
    running = is_running(lab)
    if running and not restart:
        return "already running"
    if running:
        stop(lab)
    if not lab.logfile.exists():  # mariadbd (as mysql) appends to it; so does its stderr
        lab.logfile.touch(0o640)
    chown(lab.logfile, OS_USER)
    with open(lab.logfile, "ab") as log:
        proc = subprocess.Popen([binary("mariadbd"), f"--defaults-file={lab.cnf}"], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not (lab.socket.exists() and _ping(lab)):
        if proc.poll() is not None:
            raise LabError(f"mariadbd exited {proc.returncode} while starting; {lab.logfile}:\n{_log_tail(lab)}")
        if time.monotonic() > deadline:
            raise LabError(f"mariadbd did not answer within {timeout:.0f} s; {lab.logfile}:\n{_log_tail(lab)}")
        time.sleep(0.1)
    return "restarted (my.cnf changed)" if running else "started"


def stop(lab: MyLab, timeout: float = 120) -> bool:
    """`mariadb-admin shutdown`; SIGTERM when that fails, SIGKILL after timeout. Returns True when it ran."""
    pid = server_pid(lab)
    if pid is None:
        return False
    subprocess.run([binary("mariadb-admin"), f"--defaults-file={lab.cnf}", "--connect-timeout=5", "shutdown"],
                   capture_output=True, text=True, timeout=timeout)
    deadline = time.monotonic() + timeout
    if _alive(pid) and not _wait_gone(pid, 5):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, max(deadline - time.monotonic(), 5)):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 30)
    with contextlib.suppress(ChildProcessError):  # reap it when this very process started it
        os.waitpid(pid, os.WNOHANG)
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# -- SQL as root over the socket ------------------------------------------------------------------
def sql(lab: MyLab, statements: str, timeout: float = 120) -> list[list[str]]:
    """Run statements as MariaDB root over the socket (root@localhost, no password: only reachable on this
    host). The text goes in on stdin, never on a command line. Returns the rows, tab-separated fields."""
    proc = subprocess.run([binary("mariadb"), f"--defaults-file={lab.cnf}", "--user=root", "--batch",
                           "--skip-column-names", "--raw"], input=statements, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"mariadb (as root) exited {proc.returncode}: {proc.stderr.strip()}")
    return [line.split("\t") for line in proc.stdout.splitlines()]


def native_hash(password: str) -> str:
    """The mysql_native_password hash: the clear-text password never reaches the server's logs or binlog."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def _password(lab: MyLab) -> tuple[str, bool]:
    """The copydata user's password from <run>/copydata.pw (0600), generated when missing."""
    path = lab.password_file
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip(), True
    path.chmod(0o600)
    return path.read_text().strip(), False


def read_password(lab: MyLab) -> str:
    try:
        return lab.password_file.read_text().strip()
    except FileNotFoundError:
        raise LabError(f"{lab.password_file} is missing: run `copydata lab mariadb create {lab.name}`") from None


def _user_ok(lab: MyLab, host: str, hashed: str) -> bool:
    q = f"'{DB_USER}'@'{host}'"
    rows = sql(lab, f"SELECT authentication_string FROM mysql.user WHERE user = '{DB_USER}' AND host = '{host}'")
    if not rows or rows[0][0] != hashed:
        return False
    return any(r[0].startswith("GRANT ALL PRIVILEGES ON *.* TO ") for r in sql(lab, f"SHOW GRANTS FOR {q}"))


def ensure_user(lab: MyLab) -> str:
    """The copydata user at 127.0.0.1 and localhost with ALL PRIVILEGES ON *.* (which in 10.11 covers RELOAD
    for BACKUP STAGE and FLUSH BINARY LOGS, BINLOG MONITOR for SHOW MASTER STATUS / SHOW BINARY LOGS and
    REPLICATION SLAVE for the binlog streamer). Only changes what differs. Returns a note."""
    password, new = _password(lab)
    hashed = native_hash(password)
    missing = [h for h in DB_USER_HOSTS if not _user_ok(lab, h, hashed)]
    if not missing:
        return f"{DB_USER} exists; password in {lab.password_file}"
    sql(lab, "".join(f"CREATE OR REPLACE USER '{DB_USER}'@'{h}' IDENTIFIED BY PASSWORD '{hashed}';\n"
                     f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'{h}';\n" for h in missing))
    return f"{DB_USER}@{{{','.join(missing)}}} {'created' if new else 'set'}; password in {lab.password_file}"


def client_args(lab: MyLab | str) -> ClientArgs:
    """How to connect to lab NAME (or MyLab) as copydata: socket path, 127.0.0.1 and port, user, password."""
    lab = lab if isinstance(lab, MyLab) else MyLab.named(lab)
    port = configured_port(lab.cnf)
    if port is None:
        raise LabError(f"{lab.cnf} is missing: run `copydata lab mariadb create {lab.name}`")
    return ClientArgs(lab.socket, "127.0.0.1", port, DB_USER, read_password(lab))


# -- sysbench ---------------------------------------------------------------------------------
def init_sysbench(lab: MyLab, tables: int, rows: int) -> str:
    """Database sbtest with `sysbench oltp_read_write prepare`, unless it holds sbtest tables already."""
    sysbench = shutil.which("sysbench")
    if not sysbench:
        raise LabError("sysbench is not installed: apt-get install sysbench (or leave out --sysbench-tables)")
    have = sql(lab, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'sbtest' "
                    "AND table_name LIKE 'sbtest%'")[0][0]
    if int(have):
        return f"database sbtest exists ({have} table(s)); left as is"
    if not sql(lab, "SELECT 1 FROM information_schema.schemata WHERE schema_name = 'sbtest'"):
        sql(lab, "CREATE DATABASE sbtest")
    proc = subprocess.run([sysbench, "oltp_read_write", "--db-driver=mysql", f"--mysql-socket={lab.socket}",
                           "--mysql-user=root", "--mysql-db=sbtest", f"--tables={tables}", f"--table-size={rows}",
                           f"--threads={max(1, min(tables, 4))}", "prepare"],
                          capture_output=True, text=True, timeout=24 * 3600)
    if proc.returncode != 0:
        raise LabError(f"sysbench prepare exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return f"database sbtest: {tables} table(s) of {rows} rows"
