"""drillkit's probes (one per target kind), and a place for your own."""

from drillkit.judge.probes.test_targets import *  # noqa: F401,F403


def test_no_acknowledged_write_was_lost(drill_summary):
    """An example of a probe of your own: hold any measure in summary.json to any rule."""
    measures = drill_summary["measures"]
    if measures.get("audited") is False:
        return  # not audited: the verdict already says the drill was aborted
    assert measures["writes_lost"] == 0, f"{measures['writes_lost']} acknowledged writes lost"
