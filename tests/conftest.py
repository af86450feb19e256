"""Shared fixtures: one FlashArray emulator per test session, and SDK clients verified against its CA."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Airflow reads its configuration at import: set it before anything imports airflow.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="copydata-airflow-test-")  # never the user's
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["COPYDATA_HOME"] = tempfile.mkdtemp(prefix="copydata-home-test-")  # never the project's
os.environ["COPYDATA_EMULATOR_PORT"] = "0"  # any free port: never the one `make up` uses
sys.path.insert(0, str(ROOT / "dags"))

from copydata.emulator import service  # noqa: E402


def loops_under(folder: Path) -> list[str]:
    """Loop devices whose backing file lies under folder (from `losetup -J -l`)."""
    out = subprocess.run(["losetup", "-J", "-l"], capture_output=True, text=True, check=False).stdout
    devices = json.loads(out).get("loopdevices", []) if out.strip() else []
    prefix = str(folder.resolve()) + os.sep
    return [d["name"] for d in devices
            if (d.get("back-file") or "").removesuffix(" (deleted)").startswith(prefix)]


def start_emulator(state: Path, extra_args: list[str] | None = None) -> Iterator[dict]:
    """Start an emulator on a free port; stop it and check no loop device is left, even on failure.

    A generator: next() starts it, close() stops it. Use running_emulator() in a with statement."""
    try:
        yield service.start_detached(state, "127.0.0.1", 0, extra_args or [])
    finally:
        service.stop(state)
        left = loops_under(state)
        assert not left, f"loop devices left behind under {state}: {left}"


running_emulator = contextlib.contextmanager(start_emulator)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A running emulator: {url, target, api_token, ca_file, state, pid, ...}."""
    with running_emulator(tmp_path_factory.mktemp("emulator")) as info:
        yield info


@contextlib.contextmanager
def rest2_session(emulator: dict, **kwargs) -> Iterator:
    """A py-pure-client FlashArray client that verifies the emulator's certificate (ssl_cert= is ignored
    by the SDK: the CA goes through Configuration). It logs out on exit, while the emulator still answers,
    rather than at interpreter exit."""
    from pypureclient import flasharray
    from pypureclient.configuration import Configuration

    client = flasharray.Client(emulator["target"], api_token=emulator["api_token"],
                               configuration=Configuration(ssl_ca_cert=emulator["ca_file"]), verify_ssl=True,
                               **kwargs)
    try:
        yield client
    finally:
        client._token_man.close_session()


@pytest.fixture(scope="session")
def rest2(emulator: dict) -> Iterator:
    with rest2_session(emulator) as client:
        yield client


@pytest.fixture(scope="session")
def rest1(emulator: dict) -> Iterator:
    """A purestorage 1.19 FlashArray client that verifies the emulator's certificate."""
    import purestorage

    client = purestorage.FlashArray(emulator["target"], api_token=emulator["api_token"], verify_https=True,
                                    ssl_cert=emulator["ca_file"])
    yield client
    client.invalidate_cookie()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """unique("vol") -> "vol-1a2b3c4d": names that never collide on the shared emulator."""
    tag = uuid.uuid4().hex[:8]
    return lambda prefix: f"{prefix}-{tag}"


def device_path(emulator: dict, serial: str) -> Path:
    """Where a connected volume appears on this machine."""
    return Path(emulator["state"]) / "dev" / "disk" / "by-id" / f"wwn-0x624a9370{serial.lower()}"


def write_device(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b", buffering=0) as f:
        f.seek(offset)
        f.write(data)
        os.fsync(f.fileno())


def read_device(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts)")


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata DB (in the session's temporary AIRFLOW_HOME), for dag.test()."""
    from airflow.utils import db
    db.initdb()
