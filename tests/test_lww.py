"""The active-active checker on hand-built histories with exact answers (measure/lww.py)."""

from __future__ import annotations

import pytest

from drillkit.measure.lww import Applied, ItemWrite, check


def w(key, value, t0, t1, region="A", ok=True, ts=None):
    return ItemWrite(key, value, t0, t1, ok, region, ts if ts is not None else t1)


def counts(result):
    return {k: result[k] for k in ("items_acked", "items_lost", "lww_discarded", "lww_anomalies",
                                   "items_resynced", "items_superseded", "items_divergent")}


def test_a_key_written_once_and_kept_is_nothing_but_acknowledged():
    r = check([w("k", "a1", 1.0, 1.1)], {"A": {"k": "a1"}, "B": {"k": "a1"}})
    assert counts(r) == {"items_acked": 1, "items_lost": 0, "lww_discarded": 0, "lww_anomalies": 0,
                         "items_resynced": 0, "items_superseded": 0, "items_divergent": 0}


def test_a_key_written_once_and_gone_everywhere_is_lost_and_its_age_is_the_rpo():
    r = check([w("k", "a1", 1.0, 1.1), w("j", "a2", 1.5, 1.6)], {"B": {"j": "a2"}}, t_fault=2.0)
    assert r["items_lost"] == 1 and r["findings"]["lost"][0]["key"] == "k"
    assert r["rpo_items_s"] == pytest.approx(0.9)
    assert r["regions_audited"] == ["B"]


def test_sequential_writes_supersede_each_other_and_only_the_last_can_be_lost():
    history = [w("k", "v1", 1.0, 1.1), w("k", "v2", 1.2, 1.3, region="B"), w("k", "v3", 1.4, 1.5)]
    seen = [Applied("k", "v1", "B", 1.15), Applied("k", "v2", "A", 1.35)]   # each reached the other region first
    assert counts(check(history, {"A": {"k": "v3"}, "B": {"k": "v3"}}, seen))["items_superseded"] == 2
    # had v1 not reached B before v2 was written there, v2 overwrote it unseen: discarded
    blind = check(history, {"A": {"k": "v3"}, "B": {"k": "v3"}}, seen[1:])
    assert blind["lww_discarded"] == 1 and blind["findings"]["lww_discarded"][0]["write"]["value"] == "v1"
    gone = check(history, {"A": {}, "B": {}}, seen)
    assert gone["items_lost"] == 1 and gone["findings"]["lost"][0]["write"]["value"] == "v3"
    assert gone["items_superseded"] == 2


def test_concurrent_writes_in_two_regions_lose_one_to_lww_discarded():
    history = [w("k", "a", 1.0, 1.2, region="A", ts=1.1), w("k", "b", 1.1, 1.3, region="B", ts=1.15)]
    r = check(history, {"A": {"k": "b"}, "B": {"k": "b"}})
    assert r["lww_discarded"] == 1 and r["lww_anomalies"] == 0 and r["items_lost"] == 0
    found = r["findings"]["lww_discarded"][0]
    assert found["write"]["value"] == "a" and found["winner"]["value"] == "b"
    assert [u["value"] for u in found["timeline"]] == ["a", "b"]


def test_equal_timestamps_in_both_regions_are_still_a_concurrent_discard():
    history = [w("k", "a", 1.0, 1.2, region="A", ts=5.0), w("k", "b", 1.0, 1.2, region="B", ts=5.0)]
    r = check(history, {"A": {"k": "b"}, "B": {"k": "b"}})
    assert r["lww_discarded"] == 1 and r["findings"]["lww_discarded"][0]["write"]["value"] == "a"


def test_a_winner_acknowledged_before_the_loser_started_is_an_anomaly():
    # B's clock runs ahead: its write, acknowledged at 1.1, stamps 1.6, beating A's at 1.3
    history = [w("k", "b", 1.0, 1.1, region="B", ts=1.6), w("k", "a", 1.2, 1.3, region="A", ts=1.3)]
    r = check(history, {"A": {"k": "b"}, "B": {"k": "b"}})
    assert r["lww_anomalies"] == 1 and r["lww_discarded"] == 0 and r["items_superseded"] == 0
    found = r["findings"]["lww_anomaly"][0]
    assert found["winner"]["t1"] < found["write"]["t0"] and found["write"]["value"] == "a"


def test_touching_intervals_are_concurrent_not_ordered():
    # the winner's answer came back at the very moment the loser was sent: not strictly earlier
    history = [w("k", "b", 1.0, 1.2, region="B", ts=2.0), w("k", "a", 1.2, 1.3, region="A", ts=1.3)]
    r = check(history, {"A": {"k": "b"}, "B": {"k": "b"}})
    assert r["lww_anomalies"] == 0 and r["lww_discarded"] == 1


def test_a_write_concurrent_with_two_others_is_discarded_once_and_the_middle_one_superseded():
    # x spans both y and z; y is acknowledged before z starts; z wins
    history = [w("k", "x", 1.0, 2.0, region="A", ts=1.05), w("k", "y", 1.1, 1.2, region="B", ts=1.15),
               w("k", "z", 1.5, 1.6, region="B", ts=1.55)]
    r = check(history, {"A": {"k": "z"}, "B": {"k": "z"}})
    assert counts(r) == {"items_acked": 3, "items_lost": 0, "lww_discarded": 1, "lww_anomalies": 0,
                         "items_resynced": 0, "items_superseded": 1, "items_divergent": 0}
    assert r["findings"]["lww_discarded"][0]["write"]["value"] == "x"
    # had y's region stamped it last (a clock ahead), z, started after y's ack, is an anomaly,
    # and x lost to z, concurrent with it
    history[1] = w("k", "y", 1.1, 1.2, region="B", ts=1.9)
    r = check(history, {"A": {"k": "y"}, "B": {"k": "y"}})
    assert r["lww_anomalies"] == 1 and r["findings"]["lww_anomaly"][0]["write"]["value"] == "z"
    assert r["lww_discarded"] == 1 and r["findings"]["lww_discarded"][0]["write"]["value"] == "x"


def test_an_unacknowledged_write_that_won_supersedes_and_is_not_counted_itself():
    for unknown_ts in (False, True):   # its timestamp came back or not: the final state orders it
        failed = ItemWrite("k", "b", 1.2, 2.2, False, "B", None if unknown_ts else 1.3)
        r = check([w("k", "a", 1.0, 1.1), failed], {"A": {"k": "b"}, "B": {"k": "b"}}, [Applied("k", "a", "B", 1.15)])
        assert r["items_acked"] == 1 and r["items_superseded"] == 1 and r["items_lost"] == 0


def test_without_timestamps_the_final_state_orders_the_writes():
    blind = [ItemWrite("k", "b", 1.0, 1.1, True, "B"), ItemWrite("k", "a", 1.2, 1.3, True, "A"),
             ItemWrite("j", "c", 1.0, 1.2, True, "A"), ItemWrite("j", "d", 1.1, 1.3, True, "B")]
    r = check(blind, {"A": {"k": "b", "j": "d"}, "B": {"k": "b", "j": "d"}})
    assert r["lww_anomalies"] == 1 and r["findings"]["lww_anomaly"][0]["write"]["value"] == "a"
    assert r["lww_discarded"] == 1 and r["findings"]["lww_discarded"][0]["write"]["value"] == "c"


def test_a_discard_counts_even_when_a_later_write_overwrote_the_winner():
    # during a cut both regions write k; B's write wins the merge; then a write after the heal
    history = [w("k", "a", 1.0, 1.1, region="A", ts=1.05), w("k", "b", 1.0, 1.1, region="B", ts=1.06),
               w("k", "c", 3.0, 3.1, region="A", ts=3.05)]
    r = check(history, {"A": {"k": "c"}, "B": {"k": "c"}}, [Applied("k", "b", "A", 2.0)])
    assert r["lww_discarded"] == 1 and r["findings"]["lww_discarded"][0]["write"]["value"] == "a"
    assert r["items_superseded"] == 1


def test_a_write_replication_delivered_and_lww_refused_is_still_known_to_the_region():
    history = [w("k", "a", 1.0, 1.1, region="A"), w("k", "b", 1.5, 1.6, region="B")]
    refused = [Applied("k", "a", "B", 1.3, outcome="discarded")]
    assert check(history, {"A": {"k": "b"}, "B": {"k": "b"}}, refused)["items_superseded"] == 1


def test_regions_that_disagree_are_divergent_per_key():
    history = [w("k", "a", 1.0, 1.1), w("j", "c", 1.0, 1.1)]
    r = check(history, {"A": {"k": "a", "j": "c"}, "B": {"j": "c"}})
    assert r["items_divergent"] == 1 and r["divergent"] == [{"key": "k", "values": {"A": "a", "B": None}}]
    assert r["items_lost"] == 0


def test_a_write_only_the_lost_region_held_is_resynced_when_it_comes_back():
    history = [w("k", "a1", 1.0, 1.1), w("j", "a2", 0.2, 0.3)]
    applied = [Applied("j", "a2", "B", 0.5), Applied("k", "a1", "B", 4.2)]   # k reached B after the return
    r = check(history, {"A": {"k": "a1", "j": "a2"}, "B": {"k": "a1", "j": "a2"}}, applied,
              outages={"A": (1.5, 4.0)}, t_fault=1.5)
    assert r["items_resynced"] == 1 and r["findings"]["resynced"][0]["key"] == "k"
    assert r["items_lost"] == 0 and r["rpo_items_s"] == 0.0
    # the same outage with the region's data gone for good: lost, and the RPO is its age
    r = check(history, {"B": {"j": "a2"}}, applied[:1], outages={"A": (1.5, None)}, t_fault=1.5)
    assert r["items_lost"] == 1 and r["items_resynced"] == 0 and r["rpo_items_s"] == pytest.approx(0.4)


def test_no_history_and_no_fault_measure_nothing():
    r = check([], {"A": {}, "B": {}})
    assert r["items_acked"] == 0 and r["rpo_items_s"] is None and r["items_divergent"] == 0
