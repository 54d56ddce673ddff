"""The `external` target plug-in: lifecycle, Regions (when the system names its regions) and the
final-state audit. It keeps only a small state folder of its own (the harness's Locust is
registered there, so a SIGKILLed drill's load is reaped); the user's processes are never touched."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from drillkit.errors import EnvironmentProblem, FaultError, InputError, one_line
from drillkit.evidence import OBJECT_KEY_PREFIX, TARGET_ATTACHED, write_atomic
from drillkit.scenario.schema import ExternalSpec
from drillkit.targets import processes
from drillkit.targets.capabilities import RegionHealth
from drillkit.targets.external.audit import AuditAdapter, adapter_for

PREFIX = "drillkit-external-"
STATE_FILE = "target.json"
TIMEOUT = 2.0


def _get(url: str, timeout: float = TIMEOUT) -> tuple[int, dict[str, str]]:
    """Status and headers of a GET; an HTTP error status is an answer too."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {})


def release(root: Path) -> None:
    """Stop what drillkit registered under `root` (its Locust) and drop the folder."""
    processes.stop_registered(root)
    shutil.rmtree(root, ignore_errors=True)


def _audits(spec: ExternalSpec, scenario_dir: Path) -> list[tuple[str, AuditAdapter]]:
    """(key prefix, adapter) for the records and, when the scenario names one, the objects."""
    audits = [("", adapter_for(spec.audit, scenario_dir))]
    if spec.object_audit is not None:
        audits.append((OBJECT_KEY_PREFIX, adapter_for(spec.object_audit, scenario_dir, "system.object_audit")))
    return audits


class ExternalTarget:
    kind = "external"
    born_with_the_drill = False
    """It holds data of its own: the drill's keys are scoped (drillkit.run.drill, the key scope)."""
    own_workload = None
    """No API of its own the canary could drive: the scenario's workload mapping, if any, is the one."""
    lag_interval = 0.2

    def __init__(self, root: Path, spec: ExternalSpec, events_file: Path, scenario_dir: Path):
        self.root = root
        self.spec = spec
        self._events_file = events_file
        self.scenario_dir = scenario_dir
        self._audits: list[tuple[str, AuditAdapter]] = _audits(spec, scenario_dir)

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def check_fit(cls, loaded: Any, experiment: dict[str, Any]) -> None:
        """No rules of its own: what it runs is the user's experiment against the user's system."""
        return None

    @classmethod
    def preflight(cls, spec: ExternalSpec, scenario_dir: Path | None = None, confirmed: bool = False) -> None:
        """Before anything starts: the endpoint (and each region endpoint) answers HTTP, and the
        audit adapter can read. Otherwise one line naming the field, exit 2, nothing injected."""
        probes = [("system.endpoint", spec.endpoint)]
        probes += [(f"system.region_endpoints.{r}", url) for r, url in spec.region_endpoints.items()]
        for field, base in probes:
            url = base.rstrip("/") + spec.health_path
            try:
                _get(url)
            except (OSError, ValueError) as exc:
                raise EnvironmentProblem(f"{url} does not answer: {one_line(exc)}", field=field) from None
        for _, adapter in _audits(spec, scenario_dir or Path.cwd()):
            adapter.check()

    @classmethod
    def up(cls, spec: ExternalSpec, events_file: str | Path, scenario_dir: Path | None = None,
           base_dir: str | Path | None = None, owned: bool = True) -> "ExternalTarget":
        """Attach: nothing of the user's system is started; a state folder records what drillkit runs."""
        base = Path(base_dir or tempfile.gettempdir()).absolute()
        root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
        processes.claim(root, owned)
        processes.write_registry(root, [])
        target = cls(root, spec, Path(events_file).absolute(), Path(scenario_dir or Path.cwd()).absolute())
        write_atomic(target.state_file, json.dumps({
            "kind": cls.kind, "root": str(root), "events_file": str(target.events_file),
            "scenario_dir": str(target.scenario_dir), "spec": spec.model_dump(mode="json")}, indent=2))
        return target

    @classmethod
    def attach(cls, state_file: str | Path) -> "ExternalTarget":
        try:
            doc = json.loads(Path(state_file).read_text())
        except (OSError, ValueError):
            raise InputError("no readable external target state", file=str(state_file)) from None
        return cls(Path(doc["root"]), ExternalSpec.model_validate(doc["spec"]), Path(doc["events_file"]),
                   Path(doc["scenario_dir"]))

    @classmethod
    def reap_stale(cls, base_dir: str | Path | None = None) -> list[str]:
        return processes.reap_abandoned(Path(base_dir or tempfile.gettempdir()), PREFIX, release)

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def events_file(self) -> Path:
        return self._events_file

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint.rstrip("/")

    def ready(self) -> list[tuple[str, dict]]:
        return [(TARGET_ATTACHED, {"target": self.kind, "endpoint": self.endpoint,
                                     "regions": list(self.spec.regions), "audit": self.audit_source()})]

    def facts(self) -> dict[str, str]:
        return {}

    def adopt(self, name: str, pid: int, region: str | None = None) -> None:
        entries = processes.read_registry(self.root)
        processes.write_registry(self.root, [*entries, processes.entry_for(name, pid, region)])

    def service_failure(self) -> str | None:
        """drillkit runs no part of an external system: nothing of its own can fail here."""
        return None

    def down(self) -> None:
        """Stop what drillkit started for the drill (its load); the user's system is left as it is."""
        with processes.shielded():
            # what this drill adopted itself (its registry, its folder): still ours by start time,
            # user and mark if it carries one; a reaper of a dead folder needs the mark (release)
            processes.stop_all(processes.read_registry(self.root))
            release(self.root)

    @property
    def region_header(self) -> str | None:
        return self.spec.region_header

    def lacks(self) -> list[str]:
        return [] if (self.spec.region_endpoints or self.spec.region_header) else ["Regions"]

    # -- Regions ----------------------------------------------------------------------------

    def serving_region(self) -> str:
        """The region the global endpoint answers from, as its region header names it."""
        if not self.spec.region_header:
            raise FaultError("system.region_header is not set: the endpoint does not say which region answers")
        try:
            _, headers = _get(self.endpoint + self.spec.health_path)
        except (OSError, ValueError) as exc:
            raise FaultError(f"the endpoint does not answer: {one_line(exc)}") from None
        found = {k.lower(): v for k, v in headers.items()}.get(self.spec.region_header.lower())
        if found is None:
            raise FaultError(f"the endpoint's answer has no {self.spec.region_header} header")
        return found

    def region_health(self, region: str, timeout: float = 1.0) -> RegionHealth:
        try:
            base = self.spec.region_endpoints[region]
        except KeyError:
            raise FaultError(f"no endpoint for region {region!r} (system.region_endpoints: "
                             f"{', '.join(self.spec.region_endpoints) or 'none'})") from None
        try:
            status, _ = _get(base.rstrip("/") + self.spec.health_path, timeout)
        except (OSError, ValueError) as exc:
            return RegionHealth(region, False, error=one_line(exc))
        return RegionHealth(region, 200 <= status < 400, status=status)

    # -- FinalStateAudit --------------------------------------------------------------------

    def audit_source(self) -> str:
        return " + ".join(adapter.kind for _, adapter in self._audits)

    def final_state(self) -> Iterator[tuple[str, str]]:
        """The records' final state, then the objects' (keys filed under `obj/`, as the load records them)."""
        time.sleep(max(spec.settle for spec in filter(None, (self.spec.audit, self.spec.object_audit))))
        for prefix, adapter in self._audits:
            for key, checksum in adapter.final_state():
                yield prefix + key, checksum
