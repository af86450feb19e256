"""FlashArray access for copydata: REST 2 (py-pure-client) when the array offers 2.9 or newer, else REST 1."""

from __future__ import annotations

import requests

from .types import ArrayClient, ArrayError, Connection, PgroupSnapshot, Volume

MIN_REST2 = (2, 9)
__all__ = ["ArrayClient", "ArrayError", "Connection", "PgroupSnapshot", "Volume", "choose_api", "open_array"]


def _vt(v: str) -> tuple[int, int]:
    major, minor = v.split(".")[:2]
    return int(major), int(minor)


def offered_versions(target: str, ca_file: str | None, verify_tls: bool, timeout: float = 10) -> list[str]:
    verify: bool | str = (ca_file or True) if verify_tls else False
    try:
        resp = requests.get(f"https://{target}/api/api_version", verify=verify, timeout=timeout)
        resp.raise_for_status()
        return list(resp.json()["version"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise ArrayError("api version discovery", f"cannot read https://{target}/api/api_version: {exc}") from None


def choose_api(versions: list[str], prefer: str = "auto") -> str:
    """'rest2' when a 2.x >= 2.9 is offered (unless prefer says otherwise), else 'rest1'."""
    has2 = any(_vt(v) >= MIN_REST2 for v in versions if v.startswith("2."))
    has1 = any(v.startswith("1.") for v in versions)
    wanted = {"auto": ("rest2", "rest1"), "rest2": ("rest2",), "rest1": ("rest1",)}[prefer]
    for api in wanted:
        if (api == "rest2" and has2) or (api == "rest1" and has1):
            return api
    raise ArrayError("api version negotiation",
                     f"the array offers {versions}; copydata needs REST 2.9+ or REST 1.x (asked for {prefer})")


def open_array(target: str, api_token: str, ca_file: str | None = None, verify_tls: bool = True,
               prefer: str = "auto") -> ArrayClient:
    api = choose_api(offered_versions(target, ca_file, verify_tls), prefer)
    if api == "rest2":
        from .rest2 import Rest2Array
        return Rest2Array(target, api_token, ca_file, verify_tls)
    from .rest1 import Rest1Array
    return Rest1Array(target, api_token, ca_file, verify_tls)
