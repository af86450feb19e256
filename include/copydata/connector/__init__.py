"""Host connectors: how a host reaches, mounts and quiesces array volumes."""

from .base import HostConnector, wwn_id
from .local import DeviceNotFound, LocalConnector

__all__ = ["DeviceNotFound", "HostConnector", "LocalConnector", "wwn_id"]
