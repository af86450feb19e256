"""Run, find and stop an emulator: its pid file and endpoint.json live in the state folder."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .array import Array
from .pool import Pool
from .san import LocalFabric
from .server import EmulatorServer
from .tls import ensure_certificates

log = logging.getLogger(__name__)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 18443


def preferred_port() -> int:
    """$COPYDATA_EMULATOR_PORT, else 18443 when free, else any free port (0)."""
    raw = os.environ.get("COPYDATA_EMULATOR_PORT", "").strip()
    wanted = int(raw) if raw else DEFAULT_PORT
    return 0 if wanted == 0 or _port_open(DEFAULT_HOST, wanted) else wanted


def endpoint_file(state: Path) -> Path:
    return state / "endpoint.json"


def read_endpoint(state: Path) -> dict | None:
    """The running emulator's endpoint, or None when none runs for this state folder."""
    try:
        info = json.loads(endpoint_file(state).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return info if _alive(info.get("pid", -1)) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def serve(state: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, rest1: bool = True,
          rest2_max: str | None = "2.36", ready=None) -> None:
    """Serve in the foreground until SIGTERM or SIGINT; release every loop device and mount on the way out."""
    state.mkdir(parents=True, exist_ok=True)
    running = read_endpoint(state)
    if running:
        raise RuntimeError(f"an emulator already runs for {state} (pid {running['pid']}, {running['url']})")
    ca, cert, key = ensure_certificates(state / "tls")
    array = Array(state)
    array.open()
    try:
        server = EmulatorServer(array, host, port, str(cert), str(key), rest1=rest1, rest2_max=rest2_max)
    except BaseException:
        array.close()
        raise
    port = server.server_address[1]
    info = {"url": f"https://{host}:{port}", "target": f"{host}:{port}", "api_token": array.store.data["api_token"],
            "ca_file": str(ca), "state": str(state), "pid": os.getpid(), "reflink": array.pool.reflink,
            "pool": str(array.pool.folder), "devices": str(array.fabric.by_id)}
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = server.serve_in_thread()
    endpoint_file(state).write_text(json.dumps(info, indent=1))
    os.chmod(endpoint_file(state), 0o600)
    if ready:
        ready(info)
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        array.close()
        endpoint_file(state).unlink(missing_ok=True)


def start_detached(state: Path, host: str, port: int, extra_args: list[str], timeout: float = 60) -> dict:
    """Start `copydata emulator serve` in its own session and wait until it answers."""
    running = read_endpoint(state)
    if running:
        return running
    state.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "copydata", "emulator", "serve", "--state", str(state), "--host", host,
           "--port", str(port), *extra_args]
    with open(state / "emulator.log", "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_endpoint(state)
        if info and info["pid"] == proc.pid and _port_open(host, int(info["target"].rsplit(":", 1)[1])):
            return info
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}; see {state / 'emulator.log'}")
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"emulator did not answer within {timeout:.0f} s; see {state / 'emulator.log'}")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop(state: Path, timeout: float = 30) -> bool:
    """Stop the emulator of this state folder; then make sure no device, mount or pool is left behind."""
    info = read_endpoint(state)
    stopped = False
    if info:
        os.kill(info["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(info["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(info["pid"]):
            log.warning("emulator pid %s ignored SIGTERM; killing it", info["pid"])
            os.kill(info["pid"], signal.SIGKILL)
        stopped = True
    cleanup(state)
    return stopped


def cleanup(state: Path) -> None:
    """Release what a crashed emulator may have left: volume loop devices and mounts, then the pool."""
    pool = Pool(state)
    LocalFabric(state, pool.folder).release_all()
    pool.close()
    endpoint_file(state).unlink(missing_ok=True)
