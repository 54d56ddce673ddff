"""Two endpoints with two failover policies in one system (seed 003, the chatbot), drilled through
the CLI: the frontend fails over per request at the origin timeout, the backend only when the
runbook rewrites config.json, and each client only when its cached copy expires."""

from __future__ import annotations

from support.scenario_copy import copy_scenario
from support.drills import first, ops, run_drill

from drillkit.scenario import load_scenario

SHIPPED = "scenarios/chatbot/frontend-and-backend-failover.yaml"
EDGE = 0.1


def _user(op: dict) -> str | None:
    """The Locust user that made a backend op: its keys are `<user prefix>-<seq>`."""
    if op.get("client") == "canary" or op["op"] == "page":
        return None
    return op["key"].removeprefix("obj/").rsplit("-", 1)[0]


def test_the_frontend_fails_over_per_request_and_each_client_follows_config_json_when_its_copy_expires(
        tmp_path, drillkit_cli, no_leftovers):
    scenario = load_scenario(copy_scenario(SHIPPED, tmp_path, "chatbot")).scenario
    origin_timeout = scenario.system.routing.upstream_timeout
    out = tmp_path / "out"
    code, summary, events = run_drill(drillkit_cli, tmp_path / "chatbot.yaml", out)
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    freeze = first(events, "fault.injected", fault="region-freeze")
    switch = first(events, "routing.switch", policy="config-json", reason="runbook: config.json names the DR API")
    assert switch["written"] == ["B"] and switch["stale"] == ["A"]   # the frozen region's copy stays stale
    rollbacks = first(events, "rollbacks.start")["t"]
    recorded = ops(out)

    # the frontend: every page after the freeze was served, by B's origin, after A's origin timed out
    pages = [op for op in recorded if op["op"] == "page" and op["t0"] > freeze["t"] + EDGE]
    assert pages and all(op["ok"] for op in pages), [op for op in pages if not op["ok"]][:3]
    assert {op["region"] for op in pages} == {"B"}
    held = [op for op in pages if op["t1"] < rollbacks]
    assert held and all(op["t1"] - op["t0"] >= origin_timeout - 1e-3 for op in held)
    assert m["rto_by_op"]["page"]["rto_s"] < 1.0
    assert next(c for c in summary["checks"] if c["name"] == "rto:page")["passed"]

    # the backend: no client reached B before the runbook rewrote config.json (the event is timed
    # when the write's answer came back, a moment after the store had the new copy) ...
    backend = [op for op in recorded if op["op"] in ("write", "read", "obj_write", "obj_read")]
    assert not [op for op in backend if op["region"] == "B" and op["ok"] and op["t0"] < switch["t"] - EDGE]
    # ... and each client kept its copy for the TTL, calling the frozen A until the copy expired:
    # a client's config fetch (after the first, whose copy starts at a random age) starts a TTL
    # or more after the previous one's answer, it reached B only after a fetch that ended after the switch, and while a copy it
    # fetched before the switch was still valid, every backend call it made went to A and failed
    ttl = scenario.system.routing.ttl
    users = {_user(op) for op in backend if _user(op)}
    fetches = {user: [op for op in recorded if op["op"] == "page" and op["ok"] and op["client"] == user
                      and op["key"].endswith("config.json")] for user in users}
    for user, got in fetches.items():
        assert all(b["t0"] - a["t1"] >= ttl - 1e-3 for a, b in zip(got[1:], got[2:])), (user, got)
        on_b = [op for op in backend if _user(op) == user and op["ok"] and op["region"] == "B"]
        assert on_b, f"client {user} never moved to the new backend"
        moved = min(op["t0"] for op in on_b)
        assert any(switch["t"] - EDGE < f["t1"] <= moved for f in got), (user, moved, got)
        old = [f for f in got[1:] if f["t1"] < switch["t"] - EDGE]
        if old and old[-1]["t1"] + ttl > switch["t"] + EDGE:
            kept = [op for op in backend if _user(op) == user
                    and switch["t"] + EDGE < op["t0"] < old[-1]["t1"] + ttl - EDGE]
            assert all(not op["ok"] and op["region"] != "B" for op in kept), (user, kept)
    # the write RTO cannot end before the switch, and it ends once the last client moved
    t_recovered = m["rto_by_op"]["write"]["t_recovered"]
    assert t_recovered >= switch["t"]
    assert m["rto_write_s"] >= switch["t"] - freeze["t"]
    # every client that failed was on A: none was back before the switch, and each did come back
    assert m["clients_failed"] > 1 and m["clients_not_recovered"] == []
    assert m["rto_last_client_s"] >= switch["t"] - freeze["t"]
    # nothing was acknowledged by the frozen, then fenced, old primary after the fault
    assert not [op for op in backend if op["region"] == "A" and op["ok"] and op["t0"] > freeze["t"] + EDGE]
    assert m["writes_lost_after_fault"] == 0
    assert first(events, "app.scaled", region="A")["after"] == 0
    final = [e for e in events if e["kind"] == "routing.switch" and e["policy"] == "config-json"]
    assert len(final) == 1  # the rollback's rewrite of A's copy changed no client's answer


def test_config_json_needs_the_regions_object_stores(tmp_path, drillkit_cli):
    path = copy_scenario(SHIPPED, tmp_path, "no-objects", lambda d: d["system"].pop("objects"))
    proc = drillkit_cli("validate", str(path))
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "no-objects.yaml" in line and "config-json" in line and "system.objects" in line
