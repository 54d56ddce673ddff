"""Writes in flight when the load stops, on the real sandbox through the CLI: every one of them is
in the history (invoked, then answered or not), none is counted unexpected, and the keys they
committed without an answer are `records_indeterminate`.

The drill: region A's client link delays every byte 1.5 s in each direction (from the fault on,
never cleared) while the clients give up after 1 s. So every write after the fault times out
(indeterminate), yet reaches the database 1.5 s after it was sent and commits: the Patroni case
of issue 30, where such writes were never recorded and the audit called their keys unexpected.
When the load stops, every user is mid-request."""

from __future__ import annotations

import json
from pathlib import Path

from drillkit.evidence.history import in_flight

from support.inflight import slow_link_scenario
from support.drills import first, run_drill


def invoked_keys(out: Path) -> set[str]:
    return {json.loads(line)["key"] for f in (out / "invocations").glob("*.jsonl") for line in f.read_text().splitlines()}


def test_writes_in_flight_at_the_loads_stop_are_indeterminate_never_unexpected(tmp_path, drillkit_cli,
                                                                               no_leftovers):
    out = tmp_path / "evidence"
    code, summary, events = run_drill(drillkit_cli, slow_link_scenario(tmp_path), out)
    assert code in (0, 1) and summary["verdict"] != "aborted", summary.get("reasons")
    m = summary["measures"]
    stopping = first(events, "load.stopping")
    assert stopping["stop_timeout"] == 2  # the request timeout, 1 s, rounded up, plus 1
    # every user was mid-request as the load began to stop: each such write is in the history
    # and ended indeterminate (timed out) or was never answered
    writes = [op for op in in_flight(out, stopping["t"]) if op["op"] == "write"]
    assert writes, "no write was in flight when the load stopped"
    assert {op["outcome"] for op in writes} <= {"indeterminate", None}
    assert stopping["in_flight"] >= len({(op["worker"], op["id"]) for op in writes})
    # the audit: every key present was invoked by the drill; none is unexpected; those written
    # only by timed-out writes that committed are indeterminate
    final = [json.loads(line) for line in (out / "final_state.jsonl").read_text().splitlines()]
    assert first(events, "drill.start")["scope"] == ""  # the sandbox is born with the drill: all its keys are
    assert {r["key"] for r in final} <= invoked_keys(out)
    assert m["records_unexpected"] == 0
    assert m["writes_indeterminate"] >= len(writes) and m["records_indeterminate"] > 0
    assert m["writes_lost"] == 0  # an indeterminate write absent is not lost
    check = next(c for c in summary["checks"] if c["name"] == "max_unexpected")
    assert check["passed"]
