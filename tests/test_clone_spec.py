"""CloneSpec.restore_command: PostgreSQL writes it instead of its own copy from log_mount; MariaDB refuses it.
No database server, no root."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from copydata.engines.base import CloneSpec


def spec(tmp_path: Path, **kw) -> CloneSpec:
    return CloneSpec(name="c1", data_mount=tmp_path / "data", log_mount=tmp_path / "logs", port=55999,
                     target=None, snapshot_meta={}, run_dir=tmp_path / "run", **kw)


def test_postgres_writes_the_given_restore_command_else_its_own_copy(tmp_path: Path) -> None:
    from copydata.engines.postgres import PostgresEngine

    engine = PostgresEngine(bin_dir=tmp_path)
    own = engine._settings(spec(tmp_path))
    assert own["restore_command"] == f'cp "{tmp_path}/logs/wal/%f" "%p"'
    given = engine._settings(spec(tmp_path, restore_command="/bin/sh /x/fetch.sh %f %p"))
    assert given == {**own, "restore_command": "/bin/sh /x/fetch.sh %f %p"}
    assert list(given) == list(own)   # same block, same order: only the command differs
    no_logs = dataclasses.replace(spec(tmp_path, restore_command="fetch %f %p"), log_mount=None)
    assert engine._settings(no_logs)["restore_command"] == "fetch %f %p"
    assert "restore_command" not in engine._settings(dataclasses.replace(no_logs, restore_command=None))


def test_mariadb_refuses_a_restore_command(tmp_path: Path) -> None:
    from copydata.engines.mariadb import MariaDbEngine

    with pytest.raises(ValueError, match="MariaDB replays the binary logs"):
        MariaDbEngine().prepare_clone(spec(tmp_path, restore_command="cp %f %p"))
