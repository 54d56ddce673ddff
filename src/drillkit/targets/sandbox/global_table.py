"""The sandbox's global table as the harness sees it (strategy active-active): each direction's
replication status, a settle that waits for what can still be delivered, and every standing
region's final table for the audit. The services are drillkit.targets.sandbox.table_service."""

from __future__ import annotations

import time

from drillkit.targets.capabilities import TableReplicationStatus
from drillkit.targets.sandbox import table_service as table
from drillkit.net import http_json


class TableSteps:
    """Operations of `Sandbox` (which supplies state, _reload, _region) under strategy active-active."""

    def home_regions(self) -> list[str]:
        """Every region clients live near (each holds a replica, standing or not)."""
        return [r.name for r in self.state.regions.values() if r.table_port is not None]

    def table_regions(self) -> list[str]:
        """The regions whose replica still stands: not down (a killed region's table, in memory,
        is gone for good) and not frozen."""
        self._reload()
        return [r.name for r in self.state.regions.values()
                if r.table_port is not None and r.role != "down" and not r.frozen]

    def table_replication(self) -> list[TableReplicationStatus]:
        """Each standing region's replicator: what it has not yet delivered to the other region."""
        out = []
        for name in self.table_regions():
            region = self.state.regions[name]
            destination = next(r for r in self.state.regions if r != name)
            try:
                _, doc = http_json(f"http://127.0.0.1:{region.table_replicator_port}/", timeout=1.0)
            except OSError as exc:
                out.append(TableReplicationStatus(name, destination, None, None, 0, 0, str(exc)))
                continue
            out.append(TableReplicationStatus(name, destination, int(doc["backlog"]), doc.get("oldest_pending_s"),
                                              int(doc["applied"]), int(doc["discarded"]), doc.get("last_error")))
        return out

    def settle_table(self, timeout: float | None = None) -> list[TableReplicationStatus]:
        """Wait until every replicator between standing regions has delivered all it holds (a
        region that is gone cannot receive, so what is queued for it does not count); at most
        `timeout` s, by default 10 s plus four times the replicators' own delay."""
        if timeout is None:
            timeout = 10.0 + 4 * self.state.table_replication_delay
        deadline = time.monotonic() + timeout
        while True:
            standing = set(self.table_regions())
            status = [s for s in self.table_replication() if s.destination in standing]
            if all(s.backlog == 0 for s in status) or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    def table_final_state(self) -> dict[str, dict[str, dict]]:
        """Every standing region's table: region → key → {value, ts, origin}."""
        return {name: table.scan(table.table_client(self.state.regions[name].table_port, timeout=5.0, attempts=3))
                for name in self.table_regions()}
