"""The /copydata plugin on a real Airflow API server: authentication, and catalog contents as JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from copydata.sysutil import free_port

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def seed_catalog(url: str) -> None:
    from copydata.catalog import Catalog

    cat = Catalog(url)
    cat.ensure_application("shop", "gold", "postgresql", {})
    snap = cat.add_snapshot("shop", "shop.s1", {"data": "shop.s1.shop-data"}, "emu", T0, T0, {})
    cat.add_log_backup("shop", "shop-logs.l1", {"archive": "x"}, T0, T0 + dt.timedelta(minutes=5))
    cat.add_clone("shop", "shop-dev", snap.id, "alice", point_in_time=T0 + dt.timedelta(minutes=2), port=55555,
                  state="running")


@pytest.fixture(scope="module")
def api_server(airflow_db, tmp_path_factory):
    home = tmp_path_factory.mktemp("plugin")
    catalog = f"sqlite:///{home / 'catalog.db'}"
    seed_catalog(catalog)
    (home / "passwords.json").write_text(json.dumps({"admin": "s3cret-admin"}))
    port = free_port()
    env = {**os.environ, "COPYDATA_CATALOG_URL": catalog, "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__CORE__AUTH_MANAGER":
           "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__API_AUTH__JWT_SECRET": "x" * 64, "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    log = open(home / "api.log", "w")  # noqa: SIM115 - closed in the finaliser
    proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/copydata/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (home / "api.log").read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("api-server did not answer: " + (home / "api.log").read_text()[-3000:])
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": "s3cret-admin"},
                              timeout=10).json()["access_token"]
        yield base, token
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        log.close()


def test_health_is_public_and_data_needs_a_token(api_server):
    base, _ = api_server
    assert requests.get(f"{base}/copydata/health", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{base}/copydata/api/applications", timeout=10).status_code == 401


def test_points_clones_and_page(api_server):
    base, token = api_server
    auth = {"Authorization": f"Bearer {token}"}
    apps = requests.get(f"{base}/copydata/api/applications", headers=auth, timeout=10).json()
    assert [a["name"] for a in apps] == ["shop"]
    assert apps[0]["points"]["earliest"] == "2026-11-27T10:00:00Z"
    assert apps[0]["points"]["latest"] == "2026-11-27T10:05:00Z"
    clones = requests.get(f"{base}/copydata/api/clones", headers=auth, timeout=10).json()
    assert clones[0]["name"] == "shop-dev" and clones[0]["port"] == 55555
    assert requests.get(f"{base}/copydata/api/applications/nope/points", headers=auth,
                        timeout=10).status_code == 404
    page = requests.get(f"{base}/copydata/", headers=auth, timeout=10)
    assert page.status_code == 200 and "shop-dev" in page.text
