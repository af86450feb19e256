"""A write load for lab databases: pgbench plus a ticker that commits one row every ~10 ms,
so every second of the run holds commits that a point-in-time clone must (or must not) contain."""

from __future__ import annotations

import contextlib
import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


OLTP_ROWS = 200


@dataclass
class MariaLoad:
    """A ticker (a row every 10 ms, ts = NOW(6)) and `writers` OLTP writers (5 UPDATEs + 1 INSERT per
    transaction, `pause` seconds between the UPDATEs and the INSERT: a window in which a freeze meets
    transactions in flight). Connections: `connector()` if given, else the lab client's socket."""

    client: object = None  # copydata.lab.myserver.ClientArgs
    connector: Callable[[], Any] | None = None
    writers: int = 1
    pause: float = 0.0
    stopping: threading.Event = field(default_factory=threading.Event)
    errors: list = field(default_factory=list)
    threads: list = field(default_factory=list)

    def start(self) -> MariaLoad:
        with contextlib.closing(self.connect()) as c:
            cur = c.cursor()
            cur.execute("CREATE DATABASE IF NOT EXISTS app")
            cur.execute("CREATE TABLE IF NOT EXISTS app.ticks (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                        "ts DATETIME(6) NOT NULL DEFAULT NOW(6))")
            cur.execute("CREATE TABLE IF NOT EXISTS app.acct (id INT PRIMARY KEY, bal BIGINT NOT NULL)")
            cur.execute("CREATE TABLE IF NOT EXISTS app.hist (id BIGINT AUTO_INCREMENT PRIMARY KEY, acct INT, "
                        "delta INT)")
            cur.execute("USE app")
            cur.execute(f"INSERT IGNORE INTO app.acct SELECT seq, 0 FROM seq_1_to_{OLTP_ROWS}")
        self.threads = [threading.Thread(target=self._guard, args=(f,), daemon=True)
                        for f in (self._ticker, *[self._oltp] * self.writers)]
        for t in self.threads:
            t.start()
        return self

    def connect(self):
        if self.connector is not None:
            return self.connector()
        import mysql.connector
        return mysql.connector.connect(**self.client.unix(), autocommit=True)

    def finish(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)
        if self.errors:
            raise RuntimeError(f"the load failed: {self.errors}")

    def _guard(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # reported by finish()
            self.errors.append(repr(exc))

    def _ticker(self) -> None:
        with contextlib.closing(self.connect()) as c:
            cur = c.cursor()
            while not self.stopping.is_set():
                cur.execute("INSERT INTO app.ticks () VALUES ()")
                time.sleep(0.01)

    def _oltp(self) -> None:
        rng = random.Random()
        with contextlib.closing(self.connect()) as c:
            cur = c.cursor()
            while not self.stopping.is_set():
                cur.execute("START TRANSACTION")
                accts = sorted(rng.sample(range(1, OLTP_ROWS + 1), 5))
                for a in accts:
                    cur.execute("UPDATE app.acct SET bal = bal + 1 WHERE id = %s", (a,))
                if self.pause:
                    time.sleep(self.pause)
                cur.execute("INSERT INTO app.hist (acct, delta) VALUES (%s, 5)", (accts[0],))
                cur.execute("COMMIT")
