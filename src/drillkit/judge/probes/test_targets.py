"""Each probe holds one measured figure against the scenario's target and says both when it fails."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.drill_probe

RUNBOOK_REASONS = ("runbook step ", "check ", "rollback ")


def _hold(check: dict) -> None:
    assert check["passed"], check["message"]


def test_experiment_completed(drill_summary):
    reasons = [r for r in drill_summary.get("reasons", []) if "experiment" in r or "abort" in r]
    assert drill_summary["verdict"] != "aborted", f"drill aborted: {'; '.join(drill_summary.get('reasons', []))}"
    assert not reasons, "; ".join(reasons)


def test_runbook_steps_succeeded(drill_summary):
    """A runbook step that failed, a check that missed its tolerance or a failed rollback fails the
    drill even when every measured target holds: the recovery did not go as written."""
    reasons = [r for r in drill_summary.get("reasons", []) if r.startswith(RUNBOOK_REASONS)]
    assert not reasons, "; ".join(reasons)


def test_recovered(drill_check):
    _hold(drill_check("recovered"))


@pytest.mark.parametrize("target", ["rto", "rto_write", "rto_read"])
def test_rto(drill_check, target):
    _hold(drill_check(target))


def test_rpo(drill_check):
    _hold(drill_check("rpo"))


def test_lost_writes(drill_check):
    _hold(drill_check("max_lost_writes"))


@pytest.mark.parametrize("target", ["max_corrupt", "max_unexpected"])
def test_integrity(drill_check, target):
    _hold(drill_check(target))


def test_availability(drill_check):
    _hold(drill_check("min_availability"))


def test_replication_lag(drill_check):
    _hold(drill_check("max_replication_lag"))
