"""A MariaDB lab database on the emulator, under load, for the ops-level and DAG-level tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mysql.connector

from copydata.lab.load import MariaLoad


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


class MyLoad(MariaLoad):
    def __init__(self, lab: MyLabInfo):
        super().__init__(lab.client)
