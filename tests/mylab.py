"""A MariaDB lab database on the emulator, under load, for the ops-level and DAG-level tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mysql.connector

from copydata.lab.load import MariaLoad

from pglab import lab_env


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
    from copydata.demo.common import env_connections
    from copydata.emulator import service
    from copydata.lab import mariadb as labmy
    from copydata.lab import myserver

    with lab_env(home) as sla_dir:
        try:
            labmy.create(labmy.CreateOptions(name=name, data_size=4 << 30, archive_size=2 << 30, sla_dir=sla_dir,
                                             airflow=False))
            endpoint = service.read_endpoint(home / "emulator")
            client = myserver.client_args(name)
            env_connections(labmy.conn_id(name), {"conn_type": "mysql", "host": "127.0.0.1", "port": client.port,
                                                  "login": client.user, "password": client.password,
                                                  "schema": "mysql"})
            yield MyLabInfo(name, home, sla_dir, endpoint, client)
        finally:
            for run in (home / "clones").glob("*/run"):
                subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={run}/mariadbd.sock", "-uroot",
                                "shutdown"], capture_output=True, timeout=60)
            kill_mariadb_under(home / "clones")
            with contextlib.suppress(Exception):
                labmy.destroy(name, sla_dir=sla_dir, airflow=False)
            service.stop(home / "emulator")


class MyLoad(MariaLoad):
    def __init__(self, lab: MyLabInfo):
        super().__init__(lab.client)
