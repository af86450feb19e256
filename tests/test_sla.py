"""SLA files: models, YAML positions in errors, loading folders, the `copydata sla` command, the schema."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from copydata import cli
from copydata.sla import Sla, SlaError, airflow_schedule, load_all, load_sla, parse_file
from copydata.sla.cron import check_cron
from copydata.sla.durations import format_duration, parse_duration
from copydata.sla.schema import PUBLISHED, schema_text

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "sla-postgres.yaml"

# Line numbers below refer to this text: 1 name, 2 snapshot, 3 schedule, 4 log_backup, 5 interval,
# 6 retention, 7 point_in_time, 8 applications, 9 "- name", 10 engine, ..., 15 volumes, 18 mounts.
VALID = """\
name: gold
snapshot:
  schedule: "0 * * * *"
log_backup:
  interval: 15m
retention:
  point_in_time: 2d
applications:
  - name: pgdemo
    engine: postgresql
    database_conn_id: copydata_pg_pgdemo
    protection_group: pgdemo
    log_protection_group: pgdemo-logs
    host: lab-host
    volumes:
      data: pgdemo-data
      archive: pgdemo-wal
    mounts:
      data: /mnt/pgdemo/data
      archive: /mnt/pgdemo/archive
"""


def write(folder: Path, text: str, name: str = "sla.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def where(folder: Path, text: str) -> list[tuple[int, int, str]]:
    """(line, column, field) of every error in text, in file order."""
    sla, errors = parse_file(write(folder, text))
    assert (sla is None) == bool(errors)
    return [(e.line, e.column, e.field) for e in errors]


def variant(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# --- models ------------------------------------------------------------------------------------------------

def test_example_loads() -> None:
    sla = load_sla(EXAMPLE)
    app = sla.application("pgdemo")
    assert "Documentation example" in sla.description
    assert (sla.schedule_kind, sla.schedule_interval) == ("interval", timedelta(minutes=30))
    assert airflow_schedule(sla) == timedelta(minutes=30)
    assert airflow_schedule(sla, "log_backup") == timedelta(minutes=5)
    assert app.engine == "postgresql" and set(app.volumes) == set(app.mounts) == {"data", "archive"}
    assert sla.source_file == EXAMPLE and Sla.model_validate(sla.model_dump()).source_file is None


def test_design_doc_example_loads(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "design" / "issue3-interfaces.md").read_text()
    sla = load_sla(write(tmp_path, doc.split("```yaml\n")[1].split("```")[0]))
    assert (sla.name, sla.schedule_kind, sla.schedule_interval) == ("gold", "cron", None)
    assert airflow_schedule(sla) == "0 * * * *"
    assert sla.retention.point_in_time == timedelta(days=2)
    assert sla.clone_policy.masking_sql.startswith("UPDATE customers")


def test_defaults(tmp_path: Path) -> None:
    text = variant("  - name: pgdemo\n", "  - name: pgdemo\n    array_conn_id: fa2\n")
    sla = load_sla(write(tmp_path, text))
    app = sla.applications[0]
    assert sla.snapshot.freeze_timeout == timedelta(seconds=60)
    assert sla.clone_policy.default_ttl == timedelta(days=3)
    assert (sla.retention.daily, sla.retention.weekly, sla.retention.monthly) == (7, 4, 6)
    assert (app.os_user, app.data_directory, app.array_conn_id) == ("postgres", "pgdata", "fa2")


@pytest.mark.parametrize(("engine", "os_user", "data_directory"), [
    ("mariadb", "mysql", "mysql"), ("mysql", "mysql", "mysql"), ("oracle", None, None)])
def test_engine_defaults(engine: str, os_user: str | None, data_directory: str | None) -> None:
    app = {"name": "db", "engine": engine, "database_conn_id": "c", "protection_group": "pg", "host": "h",
           "volumes": {"data": "v"}}
    sla = Sla.model_validate({"name": "s", "snapshot": {"schedule": "1h"}, "applications": [app]})
    assert (sla.applications[0].os_user, sla.applications[0].data_directory) == (os_user, data_directory)


def test_json_round_trip() -> None:
    sla = load_sla(EXAMPLE)
    data = json.loads(sla.model_dump_json())
    assert data["snapshot"] == {"schedule": "30m", "freeze_timeout": "1m"}
    assert data["clone_policy"]["default_ttl"] == "3d"
    assert Sla.model_validate(data).model_dump() == sla.model_dump()
    assert Sla.model_validate(yaml.safe_load(yaml.safe_dump(data))).model_dump() == sla.model_dump()


def test_replication_proxy_host_and_queue(tmp_path: Path) -> None:
    replication = "replication:\n  targets:\n    - {name: local, url: 'file:///srv/r'}\n"
    plain = load_sla(write(tmp_path, VALID + replication)).replication
    assert (plain.proxy_host, plain.proxy_queue) == (None, None)
    proxied = load_sla(write(tmp_path, VALID + replication + "  proxy_host: backup-proxy\n  proxy_queue: proxy_q.1\n"))
    assert (proxied.replication.proxy_host, proxied.replication.proxy_queue) == ("backup-proxy", "proxy_q.1")
    bad = VALID + replication + "  proxy_host: backup_proxy\n  proxy_queue: a,b\n"
    assert [f for *_, f in where(tmp_path, bad)] == ["replication.proxy_host", "replication.proxy_queue"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("PT15M", 900),
    ("P7D", 604800), ("P1DT2H", 93600), ("P1W", 604800), ("PT1H30M", 5400), (" 5m ", 300)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "15 m", "1.5h", "15M", "1h30m", "-5m", "0s", "PT0S", "P", "PT",
                                  "P1M", "P1Y", "PT1.5S", "15 minutes", "P1D2H"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (60, 90, 5400, 86400, 1209600)] == \
        ["1m", "90s", "90m", "1d", "2w"]


@pytest.mark.parametrize("text", ["0 * * * *", "*/15 8-18 * * MON-FRI", "0 0 1,15 * *", "5/10 * * * *",
                                  "0 0 * jan-mar 0", "0 0 * * 7", "0-30/10 *  * * *", "@daily", "@quarterly"])
def test_cron(text: str) -> None:
    assert check_cron(text) == " ".join(text.split())


@pytest.mark.parametrize(("text", "reason"), [
    ("0 * * *", "4 fields"), ("0 * * * * *", "6 fields"), ("60 * * * *", "minute field: 60 is outside 0-59"),
    ("* 24 * * *", "hour"), ("* * 0 * *", "day of month"), ("* * * 13 *", "month"), ("* * * * 8", "day of week"),
    ("*/0 * * * *", "step 0"), ("5-1 * * * *", "backwards"), ("a * * * *", "not a number"),
    ("1,,2 * * * *", "not '*'"), ("* * * FOO *", "JAN"), ("@every5m", "unknown cron preset")])
def test_bad_cron(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_cron(text)


# --- errors at the right place -----------------------------------------------------------------------------

def test_valid_text_has_no_error(tmp_path: Path) -> None:
    assert where(tmp_path, VALID) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    # YAML syntax: the parser's position
    ("  interval: 15m\n", "  interval: [15m\n", [(6, 10, "<document>")]),
    ("  schedule:", "\tschedule:", [(3, 1, "<document>")]),
    # unknown key: the key itself
    ("  schedule:", "  shedule:", [(2, 1, "snapshot.schedule"), (3, 3, "snapshot.shedule")]),
    ("    host: lab-host\n", "    host: lab-host\n    hots: x\n", [(15, 5, "applications[0].hots")]),
    # missing key: the parent mapping (the list item for an application)
    ("    host: lab-host\n", "", [(9, 5, "applications[0].host")]),
    ("name: gold\n", "", [(1, 1, "name")]),
    # wrong types and values: the value
    ("point_in_time: 2d\n", "point_in_time: 2d\n  daily: seven\n", [(8, 10, "retention.daily")]),
    ("interval: 15m", "interval: 15 minutes", [(5, 13, "log_backup.interval")]),
    ("interval: 15m", "interval: P1M", [(5, 13, "log_backup.interval")]),
    ('"0 * * * *"', '"0 * * *"', [(3, 13, "snapshot.schedule")]),
    ('"0 * * * *"', '"0 25 * * *"', [(3, 13, "snapshot.schedule")]),
    ("name: gold", "name: Gold_1", [(1, 7, "name")]),
    ("- name: pgdemo", "- name: -pgdemo", [(9, 11, "applications[0].name")]),
    ("engine: postgresql", "engine: postgres", [(10, 13, "applications[0].engine")]),
    ("data: /mnt/pgdemo/data", "data: mnt/pgdemo/data", [(19, 13, "applications[0].mounts.data")]),
    ("      data: pgdemo-data\n", "      Data: pgdemo-data\n", [(16, 7, "applications[0].volumes.Data")]),
    ('snapshot:\n  schedule: "0 * * * *"\n', "snapshot: 5\n", [(2, 11, "snapshot")]),
    # duplicate key: the second one
    ("  point_in_time: 2d\n", "  point_in_time: 2d\n  point_in_time: 3d\n", [(8, 3, "retention.point_in_time")]),
    # rules over several fields
    ("      archive: pgdemo-wal\n", "", [(15, 5, "applications[0].volumes.archive")]),
    ("      archive: /mnt/pgdemo/archive\n", "", [(18, 5, "applications[0].mounts.archive")]),
    ("      archive: /mnt/pgdemo/archive\n", "      archive: /mnt/pgdemo/data\n",
     [(20, 16, "applications[0].mounts.archive")]),
    ("    log_protection_group: pgdemo-logs\n", "", [(9, 5, "applications[0].log_protection_group")]),
    ("point_in_time: 2d", "point_in_time: 10m", [(7, 18, "retention.point_in_time")]),
    ('"0 * * * *"', "30s", [(3, 13, "snapshot.schedule")]),
    ('"0 * * * *"', "1m\n  freeze_timeout: 2m", [(4, 19, "snapshot.freeze_timeout")]),
    ("applications:\n", "clone_policy:\n  masking_sql: select 1\n  masking_script: /bin/mask\napplications:\n",
     [(10, 19, "clone_policy.masking_script")]),
])
def test_error_position(tmp_path: Path, old: str, new: str, expected: list[tuple[int, int, str]]) -> None:
    assert where(tmp_path, variant(old, new)) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("", (1, 1, "<document>", "the file is empty")),
    ("# nothing but a comment\n", (1, 1, "<document>", "the file is empty")),
    ("- name: gold\n", (1, 1, "<document>", "wrong type: found a list")),
    ("gold\n", (1, 1, "<document>", "wrong type: found a string")),
    ("name: a\n---\nname: b\n", (2, 1, "<document>", "but found another document")),
    (VALID + "on: 1\n", (21, 1, "True", "key True is a boolean, not a string")),
])
def test_document_errors(tmp_path: Path, text: str, expected: tuple) -> None:
    _, errors = parse_file(write(tmp_path, text))
    assert len(errors) == 1
    assert (errors[0].line, errors[0].column, errors[0].field) == expected[:3]
    assert expected[3] in errors[0].message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: gold\ndescription: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SlaError) as caught:
        load_sla(path)
    assert (caught.value.line, caught.value.column, caught.value.expected) == (2, 17, "UTF-8 text")


def test_error_text_and_all_errors(tmp_path: Path) -> None:
    text = variant("name: gold", "name: Gold", variant("interval: 15m", "interval: 15x",
                                                      variant("    host: lab-host\n", "")))
    path = write(tmp_path, text)
    with pytest.raises(SlaError) as caught:
        load_sla(path)
    err = caught.value
    assert [(e.line, e.field) for e in err.errors] == [(1, "name"), (5, "log_backup.interval"),
                                                       (9, "applications[0].host")]
    assert str(err) == (f"{path}:1:7: name: invalid value 'Gold' (expected a name matching "
                        "^[a-z0-9][a-z0-9-]{0,40}$ (lowercase letters, digits and '-', 1-41 characters))")
    assert str(err.errors[2]) == (f"{path}:9:5: applications[0].host: required key is missing "
                                  "(expected a FlashArray name: letters, digits and '-', 1-63 characters, "
                                  "optionally prefixed by 'pod::')")


def test_unknown_key_suggests(tmp_path: Path) -> None:
    _, errors = parse_file(write(tmp_path, variant("  schedule:", "  shedule:")))
    assert errors[1].message == "unknown key 'shedule' (did you mean 'schedule'?)"
    assert errors[1].expected == "one of the keys schedule, freeze_timeout"


# --- folders -----------------------------------------------------------------------------------------------

def renamed(sla: str, app: str, text: str = VALID) -> str:
    return variant("- name: pgdemo", f"- name: {app}", variant("name: gold", f"name: {sla}", text))


def test_one_broken_file_among_three(tmp_path: Path) -> None:
    write(tmp_path, renamed("gold", "db1"), "a.yaml")
    write(tmp_path, renamed("silver", "db2").replace("interval: 15m", "interval: often"), "b.yaml")
    write(tmp_path, renamed("bronze", "db3"), "c.yml")
    write(tmp_path, "not: an SLA\n", "notes.txt")
    write(tmp_path, "not: an SLA\n", ".hidden.yaml")
    slas, errors = load_all(tmp_path)
    assert [s.name for s in slas] == ["gold", "bronze"]
    assert [s.source_file for s in slas] == [tmp_path / "a.yaml", tmp_path / "c.yml"]
    assert [(Path(e.file).name, e.line, e.field) for e in errors] == [("b.yaml", 5, "log_backup.interval")]


def test_duplicate_application_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, renamed("gold", "pgdemo"), "a.yaml")
    write(tmp_path, renamed("silver", "pgdemo"), "b.yaml")
    slas, errors = load_all(tmp_path)
    assert [s.name for s in slas] == ["gold"]
    assert [(Path(e.file).name, e.line, e.column, e.field) for e in errors] == \
        [("b.yaml", 9, 11, "applications[0].name")]
    assert errors[0].message == f"application 'pgdemo' is already defined in {first}:9"


def test_duplicate_sla_name_across_files(tmp_path: Path) -> None:
    write(tmp_path, renamed("gold", "db1"), "a.yaml")
    write(tmp_path, renamed("gold", "db2"), "b.yaml")
    slas, errors = load_all(tmp_path)
    assert [s.applications[0].name for s in slas] == ["db1"]
    assert [(Path(e.file).name, e.line, e.field) for e in errors] == [("b.yaml", 1, "name")]


def test_duplicate_application_in_one_file(tmp_path: Path) -> None:
    app = VALID[VALID.index("  - name: pgdemo"):].replace("pgdemo-", "other-")
    assert where(tmp_path, VALID + app) == [(21, 11, "applications[1].name")]


def test_missing_folder(tmp_path: Path) -> None:
    slas, errors = load_all(tmp_path / "nowhere")
    assert slas == [] and errors[0].message == "no such folder"


# --- the command -------------------------------------------------------------------------------------------

def test_cli_validate_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, renamed("gold", "db1"))
    assert cli.main(["sla", "validate", str(path), str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out == f"OK {path}: 1 application(s)\nOK {EXAMPLE}: 1 application(s)\n"
    assert err == ""


def test_cli_validate_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, renamed("gold", "db1"), "a.yaml")
    bad = write(tmp_path, renamed("silver", "db2").replace("daily: 7", "x").replace("2d", "2 days"), "b.yml")
    assert cli.main(["sla", "validate", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == f"OK {good}: 1 application(s)\n"
    assert err.splitlines() == [
        f"{bad}:7:18: retention.point_in_time: '2 days' is not a duration: use one whole number and one unit "
        "(s, m, h, d, w) (expected a duration such as 90s, 15m, 2h, 7d, 1w or ISO 8601 PT15M, P7D, P1DT2H)",
        "1 error(s) in 1 file(s)"]


def test_cli_validate_missing_and_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli.main(["sla", "validate", str(tmp_path / "empty"), str(tmp_path / "none.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty'}:0:0: <document>: no SLA file in this folder" in err
    assert f"{tmp_path / 'none.yaml'}:0:0: <document>: cannot read: No such file or directory" in err


def test_cli_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sla", "show", str(EXAMPLE), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == json.loads(load_sla(EXAMPLE).model_dump_json())
    assert shown["applications"][0]["os_user"] == "postgres"
    assert cli.main(["sla", "show", str(EXAMPLE)]) == 0
    assert Sla.model_validate(yaml.safe_load(capsys.readouterr().out)).model_dump() == \
        load_sla(EXAMPLE).model_dump()
    assert cli.main(["sla", "show", str(write(tmp_path, "name: x\n"))]) == 1
    assert "snapshot: required key is missing" in capsys.readouterr().err


def test_cli_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sla", "schema"]) == 0
    assert capsys.readouterr().out == schema_text()
    assert cli.main(["sla", "schema", "--output", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text() == schema_text()


# --- schema and purity -------------------------------------------------------------------------------------

def test_published_schema_is_current() -> None:
    assert PUBLISHED == ROOT / "docs" / "sla.schema.json"
    assert PUBLISHED.read_text() == schema_text(), "run: copydata sla schema --output docs/sla.schema.json"


def test_schema_describes_defaults() -> None:
    schema = json.loads(schema_text())
    snapshot = schema["$defs"]["SnapshotPolicy"]["properties"]
    assert snapshot["freeze_timeout"]["default"] == "1m"
    assert schema["$defs"]["Application"]["properties"]["engine"] == {"$ref": "#/$defs/Engine",
                                                                       "description": "Database engine."}
    assert schema["additionalProperties"] is False
    replication = schema["$defs"]["Replication"]["properties"]
    assert replication["proxy_host"]["default"] is None and replication["proxy_queue"]["default"] is None
    assert "Edge worker" in replication["proxy_queue"]["description"]


def test_no_airflow_import() -> None:
    code = ("import sys, copydata.sla, copydata.sla.cli, copydata.sla.schema; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
