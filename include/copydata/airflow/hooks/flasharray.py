"""FlashArrayHook: owns the `flasharray` connection and the array client behind it."""

from __future__ import annotations

import socket
from typing import Any

from airflow.sdk import BaseHook

from copydata.array import ArrayClient, open_array
from copydata.connector import HostConnector, LocalConnector


def _truthy(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


class FlashArrayHook(BaseHook):
    """Connect to a FlashArray: REST 2 (py-pure-client) when it offers 2.9+, else REST 1 (purestorage).

    Connection fields: host (array address) and port, password (API token), and extras
    ``verify_tls``, ``ca_file``, ``api`` (auto/rest2/rest1), ``host_name`` and ``devices_dir``.
    """

    conn_name_attr = "flasharray_conn_id"
    default_conn_name = "flasharray_default"
    conn_type = "flasharray"
    hook_name = "Pure Storage FlashArray"

    def __init__(self, flasharray_conn_id: str = default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.flasharray_conn_id = flasharray_conn_id
        self._client: ArrayClient | None = None
        self._settings: dict | None = None

    def settings(self) -> dict:
        if self._settings is None:
            conn = self.get_connection(self.flasharray_conn_id)
            extra = conn.extra_dejson

            def get(key: str, default=None):
                value = extra.get(key, extra.get(f"extra__flasharray__{key}"))
                return default if value in (None, "") else value

            if not conn.host:
                raise ValueError(f"connection {self.flasharray_conn_id!r}: the array address (host) is empty")
            if not conn.password:
                raise ValueError(f"connection {self.flasharray_conn_id!r}: the API token (password) is empty")
            self._settings = {
                "target": f"{conn.host}:{conn.port}" if conn.port else conn.host,
                "api_token": conn.password,
                "verify_tls": _truthy(get("verify_tls"), True),
                "ca_file": get("ca_file"),
                "api": get("api", "auto"),
                "host_name": get("host_name", socket.gethostname().split(".")[0]),
                "devices_dir": get("devices_dir", "/dev/disk/by-id"),
            }
        return self._settings

    def get_conn(self) -> ArrayClient:
        if self._client is None:
            s = self.settings()
            self._client = open_array(s["target"], s["api_token"], s["ca_file"], s["verify_tls"], s["api"])
            self.log.info("FlashArray %s: %s %s", s["target"], self._client.api, self._client.api_version)
        return self._client

    def get_connector(self) -> HostConnector:
        return LocalConnector(self.settings()["devices_dir"])

    @property
    def host_name(self) -> str:
        return self.settings()["host_name"]

    def test_connection(self) -> tuple[bool, str]:
        try:
            client = self.get_conn()
            return True, f"Connected to {client.array_name()} over {client.api} {client.api_version}"
        except Exception as exc:
            return False, str(exc)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
