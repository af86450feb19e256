"""The lineage copydata shows in Airflow: source database -> snapshots / logs -> clones."""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias


def source(app: str) -> Asset:
    return Asset(name=f"copydata__{app}", uri=f"copydata://{app}", group="copydata")


def snapshots(app: str) -> Asset:
    return Asset(name=f"copydata__{app}__snapshots", uri=f"copydata://{app}/snapshots", group="copydata")


def logs(app: str) -> Asset:
    return Asset(name=f"copydata__{app}__logs", uri=f"copydata://{app}/logs", group="copydata")


def clones(app: str) -> AssetAlias:
    return AssetAlias(name=f"copydata__{app}__clones", group="copydata")


def clone(app: str, name: str) -> Asset:
    return Asset(name=f"copydata__{app}__clone__{name}", uri=f"copydata://{app}/clones/{name}", group="copydata")


def replica(app: str, target: str) -> Asset:
    """The application's points in one replication target (repository)."""
    return Asset(name=f"copydata__{app}__replica__{target}", uri=f"copydata://{app}/replicas/{target}",
                 group="copydata")
