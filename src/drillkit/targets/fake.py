"""An in-memory two-region target for tests: no process, no port, its whole state in its state file.

It implements the lifecycle and Regions, RegionFaults, Runbook, ReplicationObservation and
FinalStateAudit, so chaos providers, the audit and the contract test (tests/test_target_contract.py)
can run against it without PostgreSQL. Not a `system.kind` a scenario can choose.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from drillkit.errors import FaultError, InputError
from drillkit.evidence import EVENTS, TARGET_ATTACHED, write_atomic
from drillkit.targets.capabilities import (
    LagSample,
    Promotion,
    RegionFault,
    RegionHealth,
    ReplicaStatus,
    RoutingStatus,
)

PREFIX = "drillkit-fake-"


class FakeTarget:
    kind = "fake"
    born_with_the_drill = True
    own_workload = None
    region_header = "X-Region"
    lag_interval = 0.2

    def __init__(self, state_file: Path):
        self._state_file = Path(state_file)
        self.doc: dict[str, Any] = json.loads(self._state_file.read_text())

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def check_fit(cls, loaded: Any, experiment: dict[str, Any]) -> None:
        return None

    @classmethod
    def preflight(cls, spec: Any = None, scenario_dir: Path | None = None, confirmed: bool = False) -> None:
        return None

    @classmethod
    def up(cls, spec: Any = None, events_file: str | Path | None = None, scenario_dir: Path | None = None,
           records: dict[str, str] | None = None) -> "FakeTarget":
        root = Path(tempfile.mkdtemp(prefix=PREFIX))
        events = Path(events_file).absolute() if events_file else root / EVENTS
        doc = {"kind": cls.kind, "root": str(root), "events_file": str(events), "primary": "A", "answer": "A",
               "roles": {"A": "primary", "B": "standby"}, "frozen": [], "switches": [],
               "records": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in (records or {}).items()},
               "adopted": []}
        state = root / "fake.json"
        write_atomic(state, json.dumps(doc))
        return cls(state)

    @classmethod
    def attach(cls, state_file: str | Path) -> "FakeTarget":
        if not Path(state_file).is_file():
            raise InputError("no fake target state", file=str(state_file))
        return cls(Path(state_file))

    @classmethod
    def reap_stale(cls) -> list[str]:
        return []

    @property
    def state_file(self) -> Path:
        return self._state_file

    @property
    def events_file(self) -> Path:
        return Path(self.doc["events_file"])

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:9"  # discard: a fake serves nothing

    def ready(self) -> list[tuple[str, dict]]:
        return [(TARGET_ATTACHED, {"target": self.kind})]

    def facts(self) -> dict[str, str]:
        return {"fake": "1"}

    def adopt(self, name: str, pid: int, region: str | None = None) -> None:
        self.doc["adopted"].append([name, pid])
        self._save()

    def service_failure(self) -> str | None:
        return None

    def down(self) -> None:
        shutil.rmtree(self.doc["root"], ignore_errors=True)

    def _save(self) -> None:
        write_atomic(self._state_file, json.dumps(self.doc))

    def _role(self, region: str) -> str:
        try:
            return self.doc["roles"][region]
        except KeyError:
            raise FaultError(f"no region {region!r} (regions: {', '.join(self.doc['roles'])})") from None

    # -- Regions, RegionFaults, Runbook ------------------------------------------------------

    def serving_region(self) -> str:
        return self.doc["answer"]

    def region_health(self, region: str, timeout: float = 1.0) -> RegionHealth:
        role = self._role(region)
        healthy = role != "down" and region not in self.doc["frozen"]
        return RegionHealth(region, healthy, status=200 if healthy else None, role=role if healthy else None)

    def kill_region(self, region: str) -> RegionFault:
        self._role(region)
        self.doc["roles"][region] = "down"
        self._save()
        return RegionFault(region, time.time(), (f"app-{region}", f"db-{region}"))

    def freeze_region(self, region: str) -> RegionFault:
        self._role(region)
        self.doc["frozen"].append(region)
        self._save()
        return RegionFault(region, time.time(), (f"app-{region}",))

    def thaw_region(self, region: str) -> RegionFault:
        was = region in self.doc["frozen"]
        self.doc["frozen"] = [r for r in self.doc["frozen"] if r != region]
        self._save()
        return RegionFault(region, time.time(), (f"app-{region}",), was_frozen=was)

    def kill_app_tier(self, region: str) -> RegionFault:
        self._role(region)
        return RegionFault(region, time.time(), (f"app-{region}",))

    def promote_standby(self, region: str) -> Promotion:
        if self._role(region) != "standby":
            raise FaultError(f"region {region} is {self._role(region)}, not a standby")
        self.doc["roles"][region] = "primary"
        self.doc["primary"] = region
        self._save()
        return Promotion(region, 0.0)

    def switch_routing(self, to: str, reason: str = "runbook") -> RoutingStatus:
        self._role(to)
        self.doc["switches"].append({"from": self.doc["answer"], "to": to, "reason": reason})
        self.doc["answer"] = to
        self._save()
        return self.routing()

    def routing(self) -> RoutingStatus:
        return RoutingStatus("manual", self.doc["answer"], switches=tuple(self.doc["switches"]))

    # -- ReplicationObservation, FinalStateAudit ------------------------------------------

    def replication_status(self) -> list[ReplicaStatus]:
        standbys = [r for r, role in self.doc["roles"].items() if role == "standby"]
        return [ReplicaStatus(f"standby-{r}", "streaming", "async", 0, 0.0) for r in standbys]

    def replication_lag(self) -> list[LagSample]:
        now = time.time()
        return [LagSample(now, r, 0.0, 0) for r, role in self.doc["roles"].items() if role == "standby"]

    def audit_source(self) -> str:
        return self.doc["answer"]

    def final_state(self) -> Iterator[tuple[str, str]]:
        yield from sorted(self.doc["records"].items())
