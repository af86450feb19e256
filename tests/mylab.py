"""A MariaDB lab database on the emulator, under load, for the ops-level and DAG-level tests."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mysql.connector

OLTP_ROWS = 200


@dataclass
class MyLabInfo:
    name: str
    home: Path
    sla_dir: Path
    endpoint: dict
    client: object  # copydata.lab.myserver.ClientArgs

    @property
    def sla_name(self) -> str:
        return f"lab-{self.name}"

    @property
    def sla_file(self) -> Path:
        return self.sla_dir / f"lab-{self.name}.yaml"

    def connect(self, **kw):
        return mysql.connector.connect(**self.client.unix(), autocommit=True, **kw)


def kill_mariadb_under(folder: Path) -> None:
    for pid_file in folder.glob("**/*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, OSError):
            os.kill(int(pid_file.read_text().strip()), 9)


@contextlib.contextmanager
def mariadb_lab(name: str, home: Path) -> Iterator[MyLabInfo]:
    from copydata.emulator import service
    from copydata.lab import mariadb as labmy
    from copydata.lab import myserver
    from copydata.lab.common import lab_host

    saved = {k: os.environ.get(k) for k in ("COPYDATA_HOME", "COPYDATA_SLA_DIR", "COPYDATA_CATALOG_URL")}
    sla_dir = home / "slas"
    os.environ.update({"COPYDATA_HOME": str(home), "COPYDATA_SLA_DIR": str(sla_dir),
                       "COPYDATA_CATALOG_URL": f"sqlite:///{home / 'catalog.db'}"})
    try:
        labmy.create(labmy.CreateOptions(name=name, data_size=4 << 30, archive_size=2 << 30, sla_dir=sla_dir,
                                         airflow=False))
        endpoint = service.read_endpoint(home / "emulator")
        client = myserver.client_args(name)
        host, fa_port = endpoint["target"].rsplit(":", 1)
        os.environ[f"AIRFLOW_CONN_COPYDATA_MARIADB_{name.upper()}"] = json.dumps(
            {"conn_type": "mysql", "host": "127.0.0.1", "port": client.port, "login": client.user,
             "password": client.password, "schema": "mysql"})
        os.environ["AIRFLOW_CONN_FLASHARRAY_DEFAULT"] = json.dumps(
            {"conn_type": "flasharray", "host": host, "port": int(fa_port), "password": endpoint["api_token"],
             "extra": {"ca_file": endpoint["ca_file"], "verify_tls": True, "devices_dir": endpoint["devices"],
                       "host_name": lab_host()}})
        yield MyLabInfo(name, home, sla_dir, endpoint, client)
    finally:
        for run in (home / "clones").glob("*/run"):
            subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={run}/mariadbd.sock", "-uroot",
                            "shutdown"], capture_output=True, timeout=60)
        kill_mariadb_under(home / "clones")
        with contextlib.suppress(Exception):
            labmy.destroy(name, sla_dir=sla_dir, airflow=False)
        service.stop(home / "emulator")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class MyLoad:
    """A ticker (a row every 10 ms, ts = NOW(6)) and an OLTP writer (5 UPDATEs + 1 INSERT per transaction)."""

    lab: MyLabInfo
    stopping: threading.Event = field(default_factory=threading.Event)
    errors: list = field(default_factory=list)
    threads: list = field(default_factory=list)

    def start(self) -> MyLoad:
        with contextlib.closing(self.lab.connect()) as c:
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
                        for f in (self._ticker, self._oltp)]
        for t in self.threads:
            t.start()
        return self

    def finish(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)
        assert not self.errors, self.errors

    def _guard(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # reported by finish()
            self.errors.append(repr(exc))

    def _ticker(self) -> None:
        with contextlib.closing(self.lab.connect()) as c:
            cur = c.cursor()
            while not self.stopping.is_set():
                cur.execute("INSERT INTO app.ticks () VALUES ()")
                time.sleep(0.01)

    def _oltp(self) -> None:
        rng = random.Random()
        with contextlib.closing(self.lab.connect()) as c:
            cur = c.cursor()
            while not self.stopping.is_set():
                cur.execute("START TRANSACTION")
                accts = sorted(rng.sample(range(1, OLTP_ROWS + 1), 5))
                for a in accts:
                    cur.execute("UPDATE app.acct SET bal = bal + 1 WHERE id = %s", (a,))
                cur.execute("INSERT INTO app.hist (acct, delta) VALUES (%s, 5)", (accts[0],))
                cur.execute("COMMIT")
