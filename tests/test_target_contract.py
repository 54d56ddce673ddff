"""The contract every target plug-in keeps, run against each: the fake, the sandbox, an external system.

A target comes up with a state file another handle can attach to; what it reports is plain data
(frozen dataclasses, JSON-ready events and facts); every capability it claims answers with the
declared dataclasses; a capability it lacks is refused in one line naming it, also through a
chaos provider; its events go to the harness's log; down leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed

from drillkit import targets
from drillkit.chaos import CONFIG_KEY, EVENTS_CONFIG_KEY, actions, observe
from drillkit.errors import MissingCapability
from drillkit.evidence import read_jsonl
from drillkit.targets import capabilities as caps

HEX64 = set("0123456789abcdef")


@pytest.fixture
def fake(tmp_path):
    target = targets.plugin("fake").up(events_file=tmp_path / "events.jsonl", records={"k1": "v1", "k2": "v2"})
    yield target
    target.down()


@pytest.fixture
def sandbox(tmp_path, no_leftovers):
    from drillkit.scenario import SandboxSpec

    target = targets.plugin("sandbox").up(SandboxSpec(), events_file=tmp_path / "events.jsonl")
    yield target
    target.down()


@pytest.fixture
def external(tmp_path, kv_system, monkeypatch):
    from drillkit.scenario import ExternalSpec

    monkeypatch.setenv("KV_CONTRACT_DSN", kv_system.dsn)
    spec = ExternalSpec.model_validate({
        "kind": "external", "endpoint": kv_system.endpoint, "regions": ["east", "west"],
        "region_endpoints": {"east": kv_system.primary_url, "west": kv_system.standby_url},
        "region_header": "X-Served-By", "health_path": "/healthz",
        "audit": {"kind": "postgres", "dsn_env": "KV_CONTRACT_DSN", "query": "SELECT id, value FROM kv_items"}})
    plugin = targets.plugin("external")
    plugin.preflight(spec, tmp_path)
    target = plugin.up(spec, events_file=tmp_path / "events.jsonl", scenario_dir=tmp_path)
    yield target
    target.down()


@pytest.fixture(params=["fake", pytest.param("sandbox", marks=pytest.mark.drill),
                        pytest.param("external", marks=pytest.mark.drill)])
def target(request):
    return request.getfixturevalue(request.param)


def test_lifecycle_and_plain_data(target):
    assert isinstance(target, caps.Target)
    again = targets.attach(target.state_file)
    assert (again.kind, again.endpoint) == (target.kind, target.endpoint)
    assert again.events_file == target.events_file
    ready = target.ready()
    assert ready and all(isinstance(kind, str) for kind, _ in ready)
    json.dumps(ready)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in target.facts().items())
    assert target.service_failure() is None
    assert targets.plugin(target.kind).reap_stale() == []  # a live drill's target is never reaped


def test_every_claimed_capability_answers_with_its_dataclasses(target):
    claimed = caps.capabilities_of(target)
    assert "FinalStateAudit" in claimed, "every target must be auditable"
    if "Regions" in claimed:
        region = target.serving_region()
        assert isinstance(region, str) and region
        health = target.region_health(region) if target.kind != "external" else target.region_health("east")
        assert isinstance(health, caps.RegionHealth) and health.healthy
        assert observe.serving_region(configuration=_config(target)) == region
    if "ReplicationObservation" in claimed:
        assert all(isinstance(s, caps.LagSample) for s in target.replication_lag())
        assert all(isinstance(r, caps.ReplicaStatus) for r in target.replication_status())
    assert isinstance(target.audit_source(), str)
    for key, checksum in target.final_state():
        assert isinstance(key, str) and len(checksum) == 64 and set(checksum) <= HEX64


def test_a_lacking_capability_is_refused_in_one_line(target):
    lacking = [name for name in caps.CAPABILITIES if name not in caps.capabilities_of(target)]
    if not lacking:
        assert target.kind == "sandbox"  # the sandbox has them all; the fake and external lack some
        return
    for name in lacking:
        with pytest.raises(MissingCapability) as refused:
            caps.require(target, caps.CAPABILITIES[name])
        assert name in str(refused.value) and target.kind in str(refused.value)
        assert "\n" not in str(refused.value)
    if "ReplayControl" in lacking:
        with pytest.raises(ActivityFailed, match="lacks the ReplayControl capability"):
            actions.pause_replay("B", configuration=_config(target))


def test_chaos_providers_record_in_the_harness_log(target, tmp_path):
    harness_log = tmp_path / "harness-events.jsonl"
    config = {**_config(target), EVENTS_CONFIG_KEY: str(harness_log)}
    if caps.has(target, caps.RegionFaults):
        actions.freeze_region("B", configuration=config)
        actions.thaw_region("B", configuration=config)
        kinds = [e["kind"] for e in read_jsonl(harness_log)]
        assert kinds == ["fault.injected", "fault.cleared"]
    else:
        with pytest.raises(ActivityFailed, match="RegionFaults"):
            actions.freeze_region("east", configuration=config)
        assert not harness_log.exists()


def test_down_stops_what_it_adopted_and_leaves_nothing(target):
    state = Path(target.state_file)
    load = subprocess.Popen(["sleep", "300"], start_new_session=True)  # stands in for Locust
    try:
        target.adopt("locust", load.pid)
        target.down()
        if target.kind != "fake":  # the fake starts nothing and stops nothing
            assert load.wait(timeout=30) is not None
        assert not state.exists()
        target.down()  # a second down (every ending unwinds once more) is harmless
    finally:
        load.kill()
        load.wait()


def _config(target) -> dict:
    return {CONFIG_KEY: str(target.state_file), EVENTS_CONFIG_KEY: str(target.events_file)}


@pytest.mark.parametrize("kind", [k for k in targets.KINDS])
def test_every_plugin_answers_what_differs_between_kinds(kind):
    """What `run/`, the loader and the CLI ask of a kind is the plug-in's: its fit rules, the API
    the canary may drive, the load's region header and the lag sampler's pace."""
    plugin = targets.plugin(kind)
    assert callable(plugin.check_fit) and callable(plugin.preflight) and callable(plugin.reap_stale)
    assert isinstance(plugin.born_with_the_drill, bool)
    assert plugin.own_workload is None or plugin.own_workload.write is not None
    assert hasattr(plugin, "region_header") and hasattr(plugin, "lag_interval")
    assert hasattr(plugin, "plan") == (kind == "aws")  # only an AWS account has a plan of calls


def test_the_sandbox_refuses_a_step_its_strategy_lacks_and_no_other_kind_judges_it(tmp_path):
    """The sandbox's fit rules are its plug-in's: drillkit.targets.check_fit runs them, then what
    holds for every kind (here the phase budget); nothing is started either way."""
    import yaml

    from drillkit.errors import InputError
    from drillkit.scenario import load_experiment, load_scenario

    root = Path(__file__).resolve().parent.parent
    doc = yaml.safe_load((root / "scenarios" / "region-loss.yaml").read_text())
    doc["experiment"] = str((root / "scenarios" / doc["experiment"]).resolve())
    doc["load"]["locustfile"] = str((root / "scenarios" / doc["load"]["locustfile"]).resolve())
    doc["system"] = {**(doc.get("system") or {}), "strategy": "backup-restore"}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc))
    loaded = load_scenario(path)
    experiment = load_experiment(loaded.experiment_path)
    with pytest.raises(InputError, match="calls promote_standby, which needs region B's standby") as refused:
        targets.check_fit(loaded, experiment)
    assert refused.value.field == "system.strategy"
    targets.plugin("external").check_fit(loaded, experiment)  # an external system's experiment is the user's own
    targets.plugin("fake").check_fit(loaded, experiment)
