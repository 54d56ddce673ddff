"""One probe per check of the drill (drillkit.judge.checks): the experiment's outcome, each runbook
step and rollback, each target, each phase budget, each expected alarm, and `recovered`. A failing
probe says what was measured against what target."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.drill_probe


def test_check(drill_check):
    assert drill_check["passed"], drill_check["message"]
