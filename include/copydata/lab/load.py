"""A write load for lab databases: pgbench plus a ticker that commits one row every ~10 ms,
so every second of the run holds commits that a point-in-time clone must (or must not) contain."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


@dataclass
class PgLoad:
    socket_dir: Path
    port: int
    seconds: int
    clients: int = 2
    ticks: int = 0
    pgbench_output: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list = field(default_factory=list)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=dbname,
                               autocommit=True)

    def start(self) -> PgLoad:
        with self.connect() as c:
            c.execute("CREATE TABLE IF NOT EXISTS ticks (id bigserial PRIMARY KEY, at timestamptz "
                      "DEFAULT clock_timestamp())")
        self.threads = [threading.Thread(target=self._tick, daemon=True),
                        threading.Thread(target=self._pgbench, daemon=True)]
        for t in self.threads:
            t.start()
        return self

    def _tick(self) -> None:
        with self.connect() as c:
            while not self.stop.is_set():
                c.execute("INSERT INTO ticks DEFAULT VALUES")
                self.ticks += 1
                time.sleep(0.01)

    def _pgbench(self) -> None:
        proc = subprocess.run(["runuser", "-u", "postgres", "--", "pgbench", "-n", "-c", str(self.clients), "-j",
                               str(min(self.clients, 2)), "-T", str(self.seconds), "-h", str(self.socket_dir),
                               "-p", str(self.port), "pgbench"], capture_output=True, text=True,
                              timeout=self.seconds + 120)
        self.pgbench_output = proc.stdout + proc.stderr

    def finish(self) -> None:
        self.threads[1].join(self.seconds + 120)
        self.stop.set()
        self.threads[0].join(30)


def ticks_committed_by(conn: psycopg.Connection, upto) -> int:
    """Rows of ticks whose transaction committed at or before `upto` (needs track_commit_timestamp)."""
    return conn.execute("SELECT count(*) FROM ticks WHERE pg_xact_commit_timestamp(xmin) <= %s",
                        [upto]).fetchone()[0]


def pgbench_sums(conn: psycopg.Connection) -> tuple[int, int, int, int]:
    """sum(abalance), sum(bbalance), sum(tbalance), sum(history.delta): all equal in a consistent copy."""
    return conn.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM "
                        "pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), "
                        "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)").fetchone()
