"""Host connectors: how a host reaches, mounts and quiesces array volumes."""

from .base import HostConnector, wwn_id
from .local import DeviceNotFound, LocalConnector
from .teardown import discard_volumes

__all__ = ["DeviceNotFound", "HostConnector", "LocalConnector", "discard_volumes", "wwn_id"]
