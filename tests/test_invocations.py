"""The invoke/complete history (Jepsen's): hand-built histories whose every answer is known.

Each write is ok, fail or indeterminate (answered with no telling answer, or never answered: an
invocation no completion names), and its key present or absent in the final state. The audit's
answers: lost only when acknowledged; a present key whose only writes were indeterminate is
`records_indeterminate`, never unexpected; a present key with a failed write is recovered."""

from __future__ import annotations

import json

import pytest

from drillkit.errors import EvidenceError
from drillkit.evidence.history import read_history, read_timeline
from drillkit.evidence.recorder import FAIL, INDETERMINATE, OK, OpRecorder
from drillkit.judge import summarize

from support import histories

SCOPE = "dk0123abcd-"


def drill(tmp_path, lines, final=None, **kw):
    """test_measure's evidence folder, the invocations (`"invoke": true` here) written apart into
    invocations/w0.jsonl, beside the completions' requests/w0.jsonl."""
    calls = [{k: v for k, v in rec.items() if k != "invoke"} for rec in lines if rec.get("invoke")]
    folder = histories.drill(tmp_path, [rec for rec in lines if not rec.get("invoke")], final, **kw)
    (folder / "invocations").mkdir()
    (folder / "invocations" / "w0.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))
    return folder


def invoke(i, t0, key, ck=None, op="write"):
    return {"id": i, "invoke": True, "t0": t0, "op": op, "key": key,
            "checksum": ck if ck is not None or op != "write" else f"c-{key}", "client": "u1"}


def done(i, t0, t1, key, outcome, ck=None, op="write"):
    ok = outcome == OK
    return {"t0": t0, "t1": t1, "op": op, "key": key, "ok": ok, "status": 200 if ok else (503 if outcome == FAIL else None),
            "region": "a", "checksum": ck if ck is not None or op != "write" else f"c-{key}",
            "error": None if ok else "timed out", "client": "u1", "id": i, "outcome": outcome}


def history(*cases):
    """(key, [outcome per write]) -> invocations and completions, one write a second from t=1;
    an outcome None is a write never answered."""
    lines, i, t = [], 0, 1.0
    for key, outcomes in cases:
        for outcome in outcomes:
            i += 1
            lines.append(invoke(i, t, key))
            if outcome is not None:
                lines.append(done(i, t + 0.001, t + 0.2, key, outcome))
            t += 1.0
    return lines


def m_of(folder):
    return summarize(folder)["measures"]


def audit_lists(folder):
    return summarize(folder).audit


CASES = [  # key, its writes' outcomes, present in the final state
    ("ok-present", [OK], True),
    ("ok-absent", [OK], False),
    ("fail-present", [FAIL], True),
    ("fail-absent", [FAIL], False),
    ("indet-present", [INDETERMINATE], True),
    ("indet-absent", [INDETERMINATE], False),
    ("unanswered-present", [None], True),
    ("unanswered-absent", [None], False),
    ("fail-then-indet-present", [FAIL, INDETERMINATE], True),
    ("indet-then-ok-absent", [INDETERMINATE, OK], False),
]


def test_ok_fail_indeterminate_times_present_absent_exact_answers(tmp_path):
    ops = history(*[(k, outcomes) for k, outcomes, _ in CASES])
    final = {k: f"c-{k}" for k, _, present in CASES if present}
    folder = drill(tmp_path, ops, final, fault=100.0)
    m = m_of(folder)
    lists = audit_lists(folder)
    assert lists["lost_keys"] == ["ok-absent", "indet-then-ok-absent"]
    assert lists["recovered_keys"] == ["fail-present", "fail-then-indet-present"]
    assert sorted(lists["indeterminate_keys"]) == ["indet-present", "unanswered-present"]
    assert lists["unexpected_keys"] == [] and lists["corrupt_keys"] == []
    assert (m["writes_lost"], m["writes_recovered"], m["records_indeterminate"], m["records_unexpected"],
            m["records_corrupt"]) == (2, 2, 2, 0, 0)
    # indeterminate writes: four answered so, two never answered
    assert m["writes_indeterminate"] == 6 and m["writes_unanswered"] == 2
    assert m["writes_acked"] == 3 and m["writes_failed"] == 7  # answered, not acknowledged
    assert m["ops_total"] == 10  # the two never answered have no end: not in RTO, availability, counts


def test_a_killed_process_leaves_invocations_without_completion_read_as_indeterminate(tmp_path):
    """A client killed mid-load: its last invocations were never answered. Those whose key is
    present may have committed; those absent are not lost; RTO knows nothing of them."""
    ops = [invoke(1, 1.0, "a"), done(1, 1.0, 1.1, "a", OK), invoke(2, 2.0, "b"), done(2, 2.0, 2.1, "b", OK),
           invoke(3, 12.0, "c"), invoke(4, 12.0, "d", op="read", ck=None), invoke(5, 12.1, "e")]
    folder = drill(tmp_path, ops, {"a": "c-a", "b": "c-b", "c": "c-c"}, fault=10.0)
    m = m_of(folder)
    assert m["records_indeterminate"] == 1 and audit_lists(folder)["indeterminate_keys"] == ["c"]
    assert m["records_unexpected"] == 0 and m["writes_lost"] == 0
    assert m["writes_unanswered"] == 2 and m["writes_indeterminate"] == 2  # the read is no write
    assert m["rto_write_s"] == 0 and m["ops_total"] == 2
    h = read_history(folder)
    assert h.invoked and list(h.unanswered_t0) == [12.0, 12.0, 12.1]


def test_before_invocations_the_same_present_key_was_unexpected(tmp_path):
    """The drill this history replaces: the in-flight write's completion never recorded, its key
    present. A v1 history cannot tell it from a record nobody wrote (and measures as before)."""
    ops = [done(1, 1.0, 1.1, "a", OK)]
    for o in ops:
        del o["id"], o["outcome"]
    m = m_of(histories.drill(tmp_path, ops, {"a": "c-a", "c": "c-c"}))
    assert m["records_unexpected"] == 1
    assert "records_indeterminate" not in m and "writes_indeterminate" not in m  # v1: not recorded


def test_an_indeterminate_write_that_may_have_overwritten_is_not_corrupt(tmp_path):
    ops = [invoke(1, 1.0, "k", "c1"), done(1, 1.0, 1.1, "k", OK, "c1"), invoke(2, 2.0, "k", "c2"),
           invoke(3, 1.0, "j", "c1"), done(3, 1.0, 1.1, "j", OK, "c1"), invoke(4, 2.0, "j", "c2")]
    m = m_of(drill(tmp_path, ops, {"k": "c2", "j": "c3"}))
    assert m["records_corrupt"] == 1 and m["corrupt_keys_first"] == ["j"]  # c3 nobody sent
    assert m["records_indeterminate"] == 0  # k and j were acknowledged once


def test_the_audit_reads_only_the_drills_keys(tmp_path):
    """A system holding other data: records outside the drill's key prefix are neither
    unexpected nor corrupt; without a scope (a v1 drill) they are unexpected, as before."""
    ops = history((f"{SCOPE}a", [OK]), (f"{SCOPE}b", [OK]))
    final = {f"{SCOPE}a": f"c-{SCOPE}a", f"{SCOPE}b": f"c-{SCOPE}b", "customer-17": "x", "obj/invoice-3": "y",
             "dkffffffff-a": "z"}
    scoped = drill(tmp_path / "scoped", ops, final, events=[{"t": 0.5, "kind": "audit.done", "scope": SCOPE}])
    s = summarize(scoped)
    assert s["measures"]["records_unexpected"] == 0 and s["measures"]["records_corrupt"] == 0
    assert s["measures"]["writes_lost"] == 0 and s["measures"]["writes_acked"] == 2
    assert any("3 records of the final state are not the drill's keys" in n for n in s["notes"])
    unscoped = drill(tmp_path / "unscoped", ops, final)
    assert m_of(unscoped)["records_unexpected"] == 3


def test_writes_outside_the_scope_are_not_audited_not_lost(tmp_path):
    """A locustfile that names its own keys, not through DrillUser.key: the audit cannot tell,
    so those writes are neither lost nor recovered, and a note says why."""
    ops = history((f"{SCOPE}a", [OK]), ("mine-1", [OK]))
    s = summarize(drill(tmp_path, ops, {f"{SCOPE}a": f"c-{SCOPE}a"},
                        events=[{"t": 0.5, "kind": "audit.done", "scope": SCOPE}]))
    assert s["measures"]["writes_lost"] == 0
    assert any("1 keys written outside the drill's keys" in n for n in s["notes"])


def test_the_recorder_and_the_reader_agree(tmp_path):
    """OpRecorder's lines (the one writer) read back by read_history (the one reader)."""
    folder = histories.drill(tmp_path, [], {"k2": "c2", "k3": "c3"})
    rec = OpRecorder.to_file(folder / "requests" / "client.jsonl")
    a = rec.invoke(1.0, "write", "k1", "c1", "u1")
    rec.record(1.0, 1.1, "write", "k1", True, 200, "a", "c1", None, client="u1", id=a, outcome=OK)
    b = rec.invoke(2.0, "write", "k2", "c2", "u1")
    rec.record(2.0, 3.0, "write", "k2", False, None, None, "c2", "timed out", client="u1", id=b, outcome=INDETERMINATE)
    rec.invoke(4.0, "write", "k3", "c3", "u1")
    rec.close()
    assert (a, b) == (1, 2) and rec.count == 2 and rec.invoked == 3
    h = read_history(folder)
    assert h.invoked and len(h) == 2 and list(h.outcome) == [0, 2]
    assert h.unanswered_key.to_pylist() == ["k3"] and h.unanswered_checksum.to_pylist() == ["c3"]
    m = m_of(folder)
    assert (m["writes_lost"], m["records_indeterminate"], m["writes_indeterminate"], m["writes_unanswered"]) == (1, 2, 2, 1)
    t = read_timeline(folder)
    assert len(t) == 2 and t.unreadable == 0
    # requests/ stays a v1 file: each line a whole v1 record, plus its id and outcome
    lines = [json.loads(line) for line in (folder / "requests" / "client.jsonl").read_text().splitlines()]
    assert [(r["key"], r["ok"], r["id"], r["outcome"]) for r in lines] == [("k1", True, 1, OK),
                                                                          ("k2", False, 2, INDETERMINATE)]


def test_a_workers_shipped_invocations_land_beside_its_completions(tmp_path):
    lines, calls = [], []
    worker = OpRecorder(lines.append, 0.0, calls.append)
    worker.record(1.0, 1.1, "write", "k", True, id=worker.invoke(1.0, "write", "k"), outcome=OK)
    worker.invoke(2.0, "write", "j")
    master = OpRecorder.to_file(tmp_path / "requests" / "w.jsonl")
    master.write_lines("".join(lines), len(lines), "".join(calls))
    master.close()
    assert master.count == worker.count == 1
    assert [json.loads(c)["key"] for c in (tmp_path / "invocations" / "w.jsonl").read_text().splitlines()] == ["k", "j"]


@pytest.mark.parametrize("where, line, says", [
    ("invocations", {"t0": 1.0, "op": "write", "key": "k"}, "line 2: an invocation: id: must be a number"),
    ("invocations", {"id": 1, "t0": 1.0, "op": "write"}, "line 2: an invocation: key: must be a string"),
    ("requests", {**done(1, 1.0, 1.1, "k", OK), "outcome": "maybe"},
     "line 2: outcome: must be one of ok, fail, indeterminate"),
    ("requests", {**done(1, 1.0, 1.1, "k", OK), "ok": False}, "line 2: outcome: ok with ok false"),
    ("requests", {**done(1, 1.0, 1.1, "k", OK), "id": "one"}, "line 2: id: must be a number or null"),
])
def test_a_malformed_invocation_or_completion_names_its_file_and_line(tmp_path, where, line, says):
    folder = drill(tmp_path, [], {})
    first = invoke(9, 0.5, "x") if where == "invocations" else done(9, 0.5, 0.6, "x", OK)
    first.pop("invoke", None)
    (folder / where / "w.jsonl").write_text(json.dumps(first) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(EvidenceError, match=f"{where}/w.jsonl: " + says.replace("(", r"\(")):
        read_history(folder)


def test_the_writer_writes_the_fields_the_schema_defines_in_its_order_and_types(tmp_path):
    """evidence/recorder.py defines the record's fields once; its writer holds to them, and the
    reader's checks are drawn from them (a field added to one and not the other fails here)."""
    from drillkit.evidence import history
    from drillkit.evidence.columns import problem
    from drillkit.evidence.recorder import (COMPLETION_FIELDS, CONTEXT_FIELDS, INVOCATION_FIELDS, INVOKED_FIELDS,
                                            RECORD_FIELDS)

    recorder = OpRecorder.to_file(tmp_path / "requests" / "w0.jsonl")
    call = recorder.invoke(10.0, "write", "k1", "c1", client="w0-")
    recorder.record(10.0, 10.25, "write", "k1", True, 201, "A", "c1", None, found=None, client="w0-", value="v",
                    ts=10.1, home="A", id=call, outcome=OK)
    recorder.close()
    completion = json.loads((tmp_path / "requests" / "w0.jsonl").read_text())
    invocation = json.loads((tmp_path / "invocations" / "w0.jsonl").read_text())
    assert list(completion) == [*COMPLETION_FIELDS, *CONTEXT_FIELDS, *INVOKED_FIELDS]
    assert list(invocation) == list(INVOCATION_FIELDS)
    assert problem(completion, RECORD_FIELDS) is None and problem(invocation, INVOCATION_FIELDS) is None
    for name, checked in (("CHECKED_FIELDS", history.CHECKED_FIELDS), ("OP_FIELDS", history.OP_FIELDS),
                          ("INVOKE_FIELDS", history.INVOKE_FIELDS), ("ITEM_FIELDS", history.ITEM_FIELDS),
                          ("TIMELINE_FIELDS", history.TIMELINE_FIELDS)):
        schema = INVOCATION_FIELDS if name == "INVOKE_FIELDS" else RECORD_FIELDS
        assert set(checked) <= set(schema), (name, set(checked) - set(schema))
        assert all(kind.rstrip("?") == schema[f].rstrip("?") for f, kind in checked.items()), name
