"""RepoRestoreOperator: restore from a copydata repository in object storage (for a restore DAG).

Two modes, chosen by the templated fields:

- `point` without `point_in_time`: restore the point's volume images to `destination` (a folder: one
  `<role>.img` per volume; or array volumes: a delta restore through this worker as the proxy host).
- `point_in_time` (ISO 8601 with a zone, or `latest`): start the point's database recovered to that instant
  from the repository alone (`copydata.replication.recovery.recover_from_repo`): PostgreSQL replays the WAL,
  MariaDB/MySQL the binary logs (connecting as root over the socket; the engine comes from the point's
  manifest, the data directory and OS user are the engine's defaults). `destination` is then the work folder
  (data on a local image file + loop device: a site without the array), or array volumes (`array:PREFIX`:
  the data image goes to volume `PREFIX-data`, the work folder is `workdir` or
  `$COPYDATA_HOME/repo-recoveries/<application>-<port>`). The server keeps running after the task; its
  socket folder, port and work folder are in the returned XCom; `copydata repo discard WORKDIR` (or
  `copydata.replication.recovery.discard_recovery`) releases it, whichever the engine.

destination forms: `/path`, `dir:/path`, `file:///path`, `array:PREFIX`, `array:data=vol1,archive=vol2`, or a
dict {"dir": ...} / {"prefix": ...} / {"volumes": {...}}. Array destinations use the `flasharray`
connection `array_conn_id` (host name and devices folder from its extras).

The repository is named either explicitly (`url`, `conn_id`, `key_conn_id`) or by an SLA replication target
(`sla_file` + `target`, read at run time: the DAG copydata__<app>__repo_restore). The SLA form also applies
the SLA's `clone_policy.allowed_roles` to the user who triggered the run, like the restore DAG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from copydata.repo.errors import RepositoryError

if TYPE_CHECKING:
    from copydata.replication.target import Target


class RepoRestoreOperator(BaseOperator):
    template_fields: Sequence[str] = ("url", "sla_file", "target", "conn_id", "key_conn_id", "application", "point",
                                      "point_in_time", "destination", "port", "workdir", "array_conn_id")
    template_fields_renderers = {"destination": "json"}
    ui_color = "#c9e4ff"

    def __init__(self, *, application: str, destination: str | dict, url: str | None = None,
                 sla_file: str | None = None, target: str | None = None, point: str | None = None,
                 point_in_time: str | None = None, conn_id: str | None = None, key_conn_id: str | None = None,
                 port: int | str = 0, workdir: str | None = None, array_conn_id: str = "flasharray_default",
                 workers: int = 8, fetch_workers: int = 4, readahead: int = 32, timeout: float = 900, **kwargs):
        super().__init__(**kwargs)
        if (url is None) == (sla_file is None):
            raise ValueError("RepoRestoreOperator: give either url (with conn_id, key_conn_id) or sla_file and target")
        self.url, self.sla_file, self.target = url, sla_file, target
        self.application, self.destination = application, destination
        self.point, self.point_in_time = point, point_in_time
        self.conn_id, self.key_conn_id = conn_id, key_conn_id
        self.port, self.workdir, self.array_conn_id = port, workdir, array_conn_id
        self.workers, self.fetch_workers, self.readahead, self.timeout = workers, fetch_workers, readahead, timeout

    def execute(self, context) -> dict[str, Any]:
        from copydata.replication.restore import parse_destination

        try:
            spec = parse_destination(self.destination)
            repo = self._target(context).open_repository()
            if _given(self.point_in_time):
                return self._recover(repo, spec)
            if not _given(self.point):
                raise ValueError("set point (restore volume images) or point_in_time (recover a database)")
            return self._restore(repo, spec)
        except (RepositoryError, ValueError, LookupError) as err:   # bad input or missing data: no retry
            raise AirflowFailException(str(err)) from err

    def _target(self, context) -> Target:
        """The repository to read: the explicit url, or the SLA's replication target (after allowed_roles)."""
        from copydata.replication.target import Target

        if self.sla_file is None:
            return Target(name="restore", url=self.url, conn_id=_given(self.conn_id),
                          key_conn_id=_given(self.key_conn_id), workers=int(self.workers))
        from copydata.airflow.operators.copydata import check_allowed
        from copydata.airflow.operators.replication import find_target, open_target
        from copydata.sla.loader import load_sla

        sla = load_sla(Path(self.sla_file))
        check_allowed(sla, self.application, context)
        # render_template_as_native_obj turns a target named "123" into an int
        spec = find_target(sla, str(_given(self.target) or ""))
        return replace(open_target(spec), workers=int(self.workers))   # the operator's, as in the url form

    def _array(self, spec, roles: list[str]):
        from copydata.airflow.hooks.flasharray import FlashArrayHook
        from copydata.replication.restore import ArrayVolumes

        hook = FlashArrayHook(self.array_conn_id)
        return hook, ArrayVolumes(hook.get_conn(), hook.get_connector(), hook.host_name,
                                  spec.volume_names(roles))

    def _restore(self, repo, spec) -> dict[str, Any]:
        from copydata.replication.restore import LocalFiles, point_info, restore_point

        if not spec.is_array:
            report = restore_point(repo, self.application, self.point, LocalFiles(spec.folder))
        else:
            roles = list(point_info(repo.read_manifest(self.application, self.point)).volumes)
            hook, dest = self._array(spec, roles)
            try:
                report = restore_point(repo, self.application, self.point, dest)
            finally:
                hook.close()
        for line in report.lines():
            self.log.info("%s", line)
        return report.as_dict()

    def _recover(self, repo, spec) -> dict[str, Any]:
        from copydata import paths
        from copydata.replication.recovery import recover_from_repo

        port = int(self.port or 0)
        if port <= 0:
            raise ValueError("recovering a database needs a port")
        hook, data_on = None, None
        if spec.is_array:
            hook, data_on = self._array(spec, ["data"])
            workdir = Path(self.workdir or paths.home() / "repo-recoveries" / f"{self.application}-{port}")
        else:
            workdir = spec.folder
        try:
            rec = recover_from_repo(repo, self.application, workdir, port, point=_given(self.point),
                                    point_in_time=self.point_in_time, data_on=data_on,
                                    fetch_workers=int(self.fetch_workers), readahead=int(self.readahead),
                                    timeout=float(self.timeout))
        finally:
            if hook is not None:
                hook.close()
        summary = rec.summary()
        summary["socket_dir"] = str(rec.run_dir)
        summary["workdir"] = str(rec.workdir)
        summary["release"] = f"copydata repo discard {rec.workdir}"
        self.log.info("recovered %s/%s to %s: %s", self.application, rec.point, summary["target"],
                      summary["timings"])
        return summary


def _given(value: Any) -> Any:
    """None for unset template values ('', 'None', None)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    return value
