"""The report's sections other than the verdict and targets: phases, activities, lost writes,
scenario and topology, provenance and the evidence inventory, each built from whatever files the
folder holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drillkit.evidence import (ACTIVITY_END, ACTIVITY_START, DB_PROMOTED, DRILL_ABORTED, DRILL_REGISTERED, DRILL_START,
                               FAULT_INJECTED, HEALTH_CHANGE, OPERATOR_NOTE, OPERATOR_STEP, OPERATOR_WAITING, ROUTING_PUBLISHED,
                               ROUTING_SWITCH, TARGET_ATTACHED, TIME_METRICS)
from drillkit.judge import checks
from drillkit.report import fmt
from drillkit.report.load import Evidence

PROVENANCE_VERSIONS = ("drillkit", "chaostoolkit", "chaostoolkit-lib", "locust", "postgresql",
                       "python")


@dataclass
class Phase:
    name: str
    kind: str
    start: float | None
    end: float | None
    status: str = ""
    num: int = 0

    def cells(self, t_ref: float | None) -> dict[str, str]:
        off = (lambda t: fmt.rel(t - t_ref)) if t_ref is not None else fmt.clock
        return {
            "num": str(self.num), "name": self.name, "kind": self.kind,
            "start": "—" if self.start is None else off(self.start),
            "start_utc": fmt.clock(self.start),
            "duration": fmt.dur(self.end - self.start) if None not in (self.start, self.end)
            else "no end recorded",
            "end": "—" if self.end is None else off(self.end),
            "status": self.status,
        }


def reference(e: Evidence) -> tuple[float | None, str]:
    """Charts and phases count seconds from the fault; without one, from the drill's start."""
    m = e.measures
    t = fmt.num(m.get("t_fault"))
    if t is None:
        t = next((ev["t"] for ev in e.events if ev["kind"] == FAULT_INJECTED), None)
    if t is not None:
        return t, f"the fault ({fmt.clock(t)} UTC)"
    t = fmt.num(m.get("t_start"))
    if t is None:
        t = next((ev["t"] for ev in e.events if ev["kind"] == DRILL_START), None)
    if t is None and e.history is not None:
        t = float(e.history.t0.min())
    if t is None:
        return None, "—"
    return t, f"the drill start ({fmt.clock(t)} UTC)"


def phases(e: Evidence, t_fault: float | None) -> list[Phase]:
    rows = _activity_phases(e)
    if t_fault is not None:
        rows += _derived_phases(e, t_fault)
    rows.sort(key=_moment)
    for i, p in enumerate(rows, 1):
        p.num = i
    return rows


def _moment(p: Phase) -> tuple[bool, float]:
    """Activities sort by when they began, derived rows by the moment they name, so the table
    reads as the story of the drill."""
    t = p.end if p.kind == "derived" else p.start
    if t is None:
        t = p.start if p.kind == "derived" else p.end
    return t is None, t or 0.0


def _activity_phases(e: Evidence) -> list[Phase]:
    rows: list[Phase] = []
    started: dict[str, list[dict]] = {}
    for ev in e.events:
        name = str(ev.get("name", "?"))
        if ev["kind"] == ACTIVITY_START:
            started.setdefault(name, []).append(ev)
        elif ev["kind"] == ACTIVITY_END:
            begin = started.get(name, [])
            s = begin.pop(0) if begin else None
            rows.append(Phase(name, str(ev.get("type") or (s or {}).get("type") or "activity"),
                              s["t"] if s else None, ev["t"], str(ev.get("status") or "")))
    for name, left in started.items():
        rows += [Phase(name, str(s.get("type") or "activity"), s["t"], None, "no end recorded")
                 for s in left]
    if rows or not e.journal:
        return rows
    for item in e.journal.get("run") or []:
        act = item.get("activity") or {}
        start = fmt.iso_seconds(item.get("start"))
        end = fmt.iso_seconds(item.get("end"))
        rows.append(Phase(str(act.get("name", "?")), str(act.get("type", "activity")), start, end,
                          str(item.get("status") or "")))
    return rows


def _derived_phases(e: Evidence, t_fault: float) -> list[Phase]:
    rows = []
    after = [ev for ev in e.events if ev["t"] >= t_fault]
    for ev in after:
        if ev["kind"] == ROUTING_PUBLISHED or (
                ev["kind"] == HEALTH_CHANGE and ev.get("healthy") is False):
            what = ("routing published" if ev["kind"] == ROUTING_PUBLISHED
                    else f"region {ev.get('region', '?')} seen unhealthy")
            rows.append(Phase(f"detection ({what})", "derived", t_fault, ev["t"]))
            break
    for ev in after:
        if ev["kind"] == ROUTING_SWITCH:
            rows.append(Phase(f"traffic switched {ev.get('from', '?')} → {ev.get('to', '?')}",
                              "derived", t_fault, ev["t"]))
            break
    for ev in after:
        if ev["kind"] == DB_PROMOTED:
            rows.append(Phase(f"database promoted ({ev.get('region', '?')})", "derived", t_fault,
                              ev["t"]))
            break
    m = e.measures
    by_op = m.get("rto_by_op") if isinstance(m.get("rto_by_op"), dict) else {}
    for cls in sorted(by_op, key=lambda c: (c not in ("write", "read"), c != "write", c)):
        info = by_op[cls] if isinstance(by_op[cls], dict) else {}
        t = fmt.num(info.get("t_recovered"))
        rto = fmt.num(info.get("rto_s"))
        if t is None and rto is not None:
            t = t_fault + rto
        label = f"{cls}s" if cls in ("write", "read") else cls
        if not info.get("failures") and info.get("t_recovered") is None:
            continue
        if t is not None:
            rows.append(Phase(f"recovered ({label})", "derived", t_fault, t))
        elif info.get("failures"):
            rows.append(Phase(f"recovered ({label})", "derived", t_fault, None, "not recovered"))
    outages = m.get("outages") if isinstance(m.get("outages"), list) else []
    counts: dict[str, int] = {}
    for o in outages:
        if not isinstance(o, dict) or fmt.num(o.get("start")) is None:
            continue
        cls = str(o.get("op", "?"))
        counts[cls] = counts.get(cls, 0) + 1
        label = f"{cls}s" if cls in ("write", "read") else cls
        status = f"{o.get('failures', '?')} failed" if o.get("end") is not None else "never ended"
        rows.append(Phase(f"outage {counts[cls]} ({label})", "outage", o["start"], fmt.num(o.get("end")), status))
    return rows


def activities(journal: dict | None) -> dict[str, Any] | None:
    if not journal:
        return None

    def item(x: dict) -> dict[str, str]:
        act = x.get("activity") or {}
        exc = x.get("exception")
        error = (exc[-1] if isinstance(exc, list) and exc else exc) or ""
        return {"name": str(act.get("name", "?")), "type": str(act.get("type", "")),
                "status": str(x.get("status", "")), "start": fmt.iso_utc(x.get("start")),
                "duration": fmt.dur(x.get("duration")), "error": str(error).strip()[-300:]}

    steady = journal.get("steady_states") or {}

    def met(phase: str) -> str:
        s = steady.get(phase)
        if not isinstance(s, dict):
            return "not run"
        return {True: "met", False: "not met"}.get(s.get("steady_state_met"), "unknown")

    experiment = journal.get("experiment") if isinstance(journal.get("experiment"), dict) else {}
    return {
        "title": str(experiment.get("title") or ""),
        "status": str(journal.get("status", "unknown")),
        "deviated": journal.get("deviated"),
        "start": fmt.iso_utc(journal.get("start")), "end": fmt.iso_utc(journal.get("end")),
        "duration": fmt.dur(journal.get("duration")),
        "steady_before": met("before"), "steady_after": met("after"),
        "run": [item(x) for x in journal.get("run") or [] if isinstance(x, dict)],
        "rollbacks": [item(x) for x in journal.get("rollbacks") or [] if isinstance(x, dict)],
    }


def topology(e: Evidence) -> dict[str, Any]:
    sc = e.scenario or {}
    system = sc.get("system") if isinstance(sc.get("system"), dict) else {}
    routing = system.get("routing") if isinstance(system.get("routing"), dict) else {}
    repl = system.get("replication") if isinstance(system.get("replication"), dict) else {}
    load = sc.get("load") if isinstance(sc.get("load"), dict) else {}
    switch = next((ev for ev in e.events if ev["kind"] == ROUTING_SWITCH), None)
    promoted = next((ev for ev in e.events if ev["kind"] == DB_PROMOTED), None)
    regions = sorted({str(r) for r in e.lag["region"].unique()} if e.lag is not None else set())
    primary = str(switch.get("from")) if switch else "primary"
    standby = (str(switch.get("to")) if switch else
               str(promoted.get("region")) if promoted else regions[0] if regions else "standby")
    return {
        "present": e.scenario is not None,
        "name": sc.get("name") or e.summary.get("scenario") or "—",
        "description": sc.get("description") or "",
        "kind": system.get("kind", "—"), "strategy": system.get("strategy", "—"),
        "routing": routing, "replication": repl.get("mode", "—"),
        "users": load.get("users", "—"), "warmup": load.get("warmup", "—"),
        "duration": load.get("duration", "—"), "stable": sc.get("stable", "—"),
        "experiment": sc.get("experiment", "—"),
        "targets": sc.get("targets") if isinstance(sc.get("targets"), dict)
        else e.summary.get("targets") or {},
        "primary": primary, "standby": standby,
        "switched": switch is not None, "promoted": promoted is not None,
        "faults": [str(ev.get("fault", "?")) for ev in e.events if ev["kind"] == FAULT_INJECTED],
        "endpoint": system.get("endpoint", "—"),
        "aws": system.get("aws") if isinstance(system.get("aws"), dict) else {},
        "aws_provenance": next((str(ev["aws"]) for ev in e.events if ev["kind"] == TARGET_ATTACHED and ev.get("aws") is not None),
                               "not recorded"),
        "regions": ", ".join(map(str, system.get("regions") or [])) or "—",
        "audit": (system.get("audit") or {}).get("kind", "—") if isinstance(system.get("audit"), dict) else "—",
        "workload": load.get("workload"),
    }


def aws_calls(e: Evidence, t_ref: float | None) -> dict[str, Any] | None:
    """The call trail as "who did what": every mutating call, and a count of the reads."""
    if not e.aws_calls:
        return None
    mutating = [c for c in e.aws_calls if c.get("mutating")]
    rows = [{"at": fmt.rel(c["t0"] - t_ref) if t_ref is not None and c.get("t0") else fmt.clock(c.get("t0")),
             "call": f"{c.get('service')}.{c.get('operation')}", "region": c.get("region") or "—",
             "resource": str(c.get("resource") or "—"), "request_id": c.get("request_id") or "—",
             "caller": c.get("caller") or "—", "ok": "ok" if c.get("ok") else (c.get("error") or "failed")}
            for c in mutating]
    alarms = [{"at": fmt.rel(a["raised_at"] - t_ref) if t_ref is not None else fmt.clock(a["raised_at"]),
               "alarm": a.get("alarm"), "region": a.get("region") or "—",
               "after_fault": "—" if a.get("after_fault_s") is None else fmt.secs(a["after_fault_s"]),
               "role": "stop condition" if a.get("stops_drill") else "watched"}
              for a in e.measures.get("alarms_raised") or []]
    return {"rows": rows, "reads": len(e.aws_calls) - len(mutating), "alarms": alarms,
            "accounts": sorted({str(c.get("account")) for c in e.aws_calls if c.get("account")})}


def operator_steps(e: Evidence, t_ref: float | None) -> list[dict[str, str]]:
    """Each operator step (drillkit.chaos.gameday): when it was shown, how long it waited, how it
    ended and who ended it, with the operator's note."""
    shown: dict[str, list[dict]] = {}
    rows = []
    for ev in e.events:
        if ev["kind"] == OPERATOR_WAITING:
            shown.setdefault(str(ev.get("title")), []).append(ev)
        elif ev["kind"] == OPERATOR_STEP:
            waiting = shown.get(str(ev.get("title"))) or []
            start = waiting.pop(0) if waiting else {}
            rows.append({"title": str(ev.get("title")), "outcome": str(ev.get("outcome")), "by": str(ev.get("by")),
                         "note": str(ev.get("note") or ""), "waited": fmt.dur(ev.get("waited_s")),
                         "start": fmt.rel(start["t"] - t_ref) if start.get("t") is not None and t_ref is not None
                         else fmt.clock(start.get("t")),
                         "instructions": str(start.get("instructions") or "")})
    for title, left in shown.items():
        rows += [{"title": title, "outcome": "not ended (the drill stopped first)", "by": "—", "note": "",
                  "waited": "—", "start": fmt.rel(w["t"] - t_ref) if t_ref is not None else fmt.clock(w["t"]),
                  "instructions": str(w.get("instructions") or "")} for w in left]
    return rows


def observations(e: Evidence, t_ref: float | None) -> list[dict[str, Any]]:
    """The notes people wrote into the drill while it ran (`drillkit note`), N1, N2, … in order."""
    notes = [x for x in e.events if x["kind"] == OPERATOR_NOTE and fmt.num(x.get("t")) is not None]
    return [{"label": f"N{i}", "t": float(x["t"]), "by": str(x.get("by") or ""), "text": str(x.get("text") or ""),
             "at": fmt.rel(float(x["t"]) - t_ref) if t_ref is not None else fmt.clock(x["t"]),
             "utc": fmt.clock(x["t"])} for i, x in enumerate(notes, 1)]


def provenance(p: dict | None, events: list[dict] | None = None) -> list[tuple[str, str]] | None:
    if p is None:
        return None
    registered = next((e for e in events or [] if e.get("kind") == DRILL_REGISTERED), None)
    def value(key: str) -> str:
        v = p.get(key)
        if v in (None, ""):
            return "not recorded"
        return fmt.iso_utc(v) if key.endswith("_utc") else str(v)

    rows = [(label, value(key)) for key, label in (
        ("operator", "Operator"), ("host", "Host"), ("started_utc", "Started"),
        ("ended_utc", "Ended"), ("git_commit", "Workspace git commit"), ("command", "Command"))]
    versions = p.get("versions") if isinstance(p.get("versions"), dict) else {}
    names = list(PROVENANCE_VERSIONS) + sorted(k for k in versions if k not in PROVENANCE_VERSIONS)
    rows += [(f"Version — {n}", str(versions.get(n) or "not recorded")) for n in names]
    if registered is not None:
        rows += [("Signed by", str(registered.get("signer") or "unsigned, or a shared (HMAC) key: see manifest.json")),
                 ("Register", f"entry {registered.get('seq')} of {registered.get('register')} beside this folder "
                              f"(SHA-256 {registered.get('entry_sha256')})")]
    return rows


def lost_writes(m: dict) -> dict[str, Any]:
    window = m.get("lost_window")
    has_window = isinstance(window, (list, tuple)) and len(window) == 2
    audited = m.get("audited") is not False

    def audit_count(key: str) -> str:
        return fmt.count(m.get(key)) if audited else "not audited"

    return {
        "audited": audited,
        "counts": [
            ("Writes acknowledged", fmt.count(m.get("writes_acked"))),
            ("Writes failed (not acknowledged)", fmt.count(m.get("writes_failed"))),
            ("Lost — acknowledged, absent after recovery", audit_count("writes_lost")),
            ("Lost — acknowledged after the fault (split brain)", audit_count("writes_lost_after_fault")),
            ("Recovered — not acknowledged, yet present", audit_count("writes_recovered")),
            ("Unexpected — present, never written", audit_count("records_unexpected")),
            *([("Indeterminate — never answered, present: may have committed", audit_count("records_indeterminate"))]
              if "records_indeterminate" in m else []),
            ("Corrupt — differ from the last acknowledged write", audit_count("records_corrupt")),
        ],
        "window": (f"{fmt.utc(window[0])} – {fmt.clock(window[1])} UTC "
                   f"({fmt.secs(fmt.num(window[1]) - fmt.num(window[0]))})"
                   if has_window and None not in (fmt.num(window[0]), fmt.num(window[1]))
                   else None),
        "first_keys": [(label, [str(k) for k in m.get(key) or []]) for key, label in (
            ("lost_keys_first", "First lost keys"),
            ("lost_after_fault_keys_first", "First keys lost after the fault"),
            ("corrupt_keys_first", "First corrupt keys"))],
    }


def abort_reason(e: Evidence) -> str | None:
    ev = next((x for x in e.events if x["kind"] == DRILL_ABORTED), None)
    if ev is not None:
        return str(ev.get("reason") or "no reason recorded")
    reasons = e.summary.get("reasons") or []
    return str(reasons[0]) if reasons else None


def phase_budgets(summary: dict[str, Any], t_ref: float | None, scale: float = 1.0) -> list[dict[str, str]]:
    """Every measured runbook phase, with its budget and status where `targets.phases` sets one."""
    m = summary.get("measures") or {}
    held = checks.by_subject(summary.get("checks"), checks.PHASE)
    off = (lambda t: fmt.rel(t - t_ref)) if t_ref is not None else fmt.clock
    rows = []
    for name, p in (m.get("phases") or {}).items():
        c = held.pop(name, None)
        rows.append({"name": name, "activities": ", ".join(p.get("activities") or []),
                     "start": off(p["start"]), "duration": fmt.dur(p.get("duration_s")),
                     "production": fmt.at_scale(p.get("duration_s"), scale).removesuffix(" in production"),
                     "budget": fmt.dur(c["target"]) if c else "—",
                     "budget_production": fmt.at_scale(c["target"], scale).removesuffix(" in production") if c else "",
                     "status": ("pass" if c["passed"] else "fail") if c else "none",
                     "message": str(c.get("message") or "") if c else ""})
    for name, c in held.items():   # a budget for a phase the drill never reached
        rows.append({"name": str(name), "activities": "", "start": "—", "duration": "not run", "production": "",
                     "budget": fmt.dur(c["target"]),
                     "budget_production": fmt.at_scale(c["target"], scale).removesuffix(" in production"),
                     "status": "fail", "message": str(c.get("message") or "")})
    return rows


def alarms(summary: dict[str, Any], t_ref: float | None) -> list[dict[str, str]]:
    """Each scenario alarm: when its condition first held, when it was raised, the time between."""
    m = summary.get("measures") or {}
    held = checks.by_subject(summary.get("checks"), checks.ALARM)
    off = (lambda t: "—" if t is None else fmt.rel(t - t_ref)) if t_ref is not None else fmt.clock
    rows = []
    for a in m.get("alarms") or []:
        c = held.get(a.get("alarm"))
        limit = (fmt.dur(a["threshold"]) if a.get("metric") in TIME_METRICS
                 else fmt.count(a.get("threshold")))
        rows.append({"name": str(a.get("alarm")), "condition": f"{a.get('metric')} > {limit}"
                     + (f" in region {a['region']}" if a.get("region") else ""),
                     "held": off(a.get("condition_held_at")), "raised": off(a.get("raised_at")),
                     "cleared": off(a.get("cleared_at")),
                     "detect": fmt.dur(a.get("time_to_detect_s")) if a.get("time_to_detect_s") is not None
                     else "—",
                     "expect": str(a.get("expect") or "—"),
                     "status": ("pass" if c["passed"] else "fail") if c else "none",
                     "message": str(c.get("message") or "") if c else ""})
    return rows


def restore_tests(summary: dict[str, Any], t_ref: float | None, scale: float = 1.0) -> list[dict[str, str]]:
    """Each restore test: the backup, its age, the restore point, what was compared, the times."""
    m = summary.get("measures") or {}
    held = checks.by_subject(summary.get("checks"), checks.RESTORE_TEST)
    off = (lambda t: fmt.rel(t - t_ref)) if t_ref is not None else fmt.clock
    rows = []
    for t in m.get("restore_tests") or []:
        c = held.get(str(t.get("restore_point")))
        rows.append({
            "backup": str(t.get("base_backup")), "age": fmt.dur(t.get("backup_age_s")),
            "age_production": fmt.at_scale(t.get("backup_age_s"), scale).removesuffix(" in production"),
            "point": str(t.get("restore_point")), "at": off(t["point_at"]) if t.get("point_at") else "",
            "rows": f"{fmt.count(t.get('rows_expected'))} / {fmt.count(t.get('rows_restored'))}",
            "digest": "—" if t.get("error") else ("same" if t.get("digest_matches") else "differs"),
            "corrupt": fmt.count(t.get("corrupt_restored")), "restore": fmt.dur(t.get("restore_s")),
            "restore_production": fmt.at_scale(t.get("restore_s"), scale).removesuffix(" in production"),
            "held": fmt.dur(t.get("writes_held_s")), "torn_down": "deleted" if t.get("torn_down") else "LEFT BEHIND",
            "status": ("pass" if c["passed"] else "fail") if c else "none",
            "message": str(c.get("message") or "") if c else str(t.get("error") or "")})
    return rows


def load_workers(summary: dict[str, Any], t_ref: float | None) -> list[dict[str, str]]:
    """Distributed load: each Locust worker (from the master's events, or only its clock
    measurements), its ops, how it ended, and its clock against the harness's."""
    m = summary.get("measures") or {}
    clocks = {str(c.get("worker")): c for c in m.get("clock_offsets") or [] if isinstance(c, dict)}
    workers = {str(w.get("worker")): w for w in m.get("load_workers") or [] if isinstance(w, dict)}
    off = (lambda t: fmt.rel(t - t_ref)) if t_ref is not None else fmt.clock
    rows = []
    for name in sorted(set(workers) | set(clocks)):
        w, c = workers.get(name) or {}, clocks.get(name) or {}
        lost = w.get("end") == "lost"
        end = (f"lost: last heard from {off(w['lost_at'])}" if lost and w.get("lost_at") is not None
               else str(w.get("end") or "—"))
        rows.append({
            "worker": name, "host": str(w.get("host") or "—"), "ops": fmt.count(w.get("ops")) if w else "—",
            "end": end, "offset": fmt.ms(c.get("offset_s")) if c else "not measured",
            "drift": ("one measurement" if c.get("drift_s") is None else fmt.ms(c.get("drift_s"))) if c else "—",
            "uncertainty": f"± {fmt.ms(c.get('uncertainty_s'))}" if c else "—",
            "status": "fail" if lost else "pass"})
    return rows


ITEM_ROWS = (
    ("items_acked", "acknowledged writes", "writes to the global table the regions acknowledged"),
    ("lww_anomalies", "LWW anomalies", "overwritten by a write acknowledged before they were sent (clock skew)"),
    ("lww_discarded", "discarded by LWW", "overwritten by a concurrent write that had not seen them, without an error"),
    ("items_lost", "lost", "the key's last write, in no standing region's table"),
    ("items_resynced", "resynced", "only in the lost region when it went down, back when it returned"),
    ("items_superseded", "superseded", "overwritten by a later write that knew them: what any register does"),
    ("items_divergent", "divergent keys", "keys the standing regions disagree on after settling"),
)
TIMELINES = 3
"""Keys shown write by write, per finding kind (anomalies first)."""


def active_active(summary: dict[str, Any], t_ref: float | None) -> dict[str, Any] | None:
    """The global table's verdicts, and for the first few anomalies and discards the key's writes
    around the pair (50 ms either side): who wrote what, where, when, which region stamped it
    when, and who won; and the key's final value."""
    m = summary.get("measures") or {}
    if "items_acked" not in m:
        return None
    off = (lambda t: fmt.rel(t - t_ref)) if t_ref is not None else fmt.clock
    rows = [{"label": label, "count": fmt.count(m.get(key)), "meaning": meaning} for key, label, meaning in ITEM_ROWS]
    findings = m.get("lww_findings") or {}
    timelines = []
    for kind, title in (("lww_anomaly", "LWW anomaly"), ("lww_discarded", "discarded by LWW")):
        for f in (findings.get(kind) or [])[:TIMELINES]:
            loser, winner = f["write"]["value"], f["winner"]["value"]
            final = {v for v in (f.get("final") or {}).values() if v is not None}
            lo = min(f["write"]["t0"], f["winner"]["t0"]) - 0.05
            hi = max(f["write"]["t1"], f["winner"]["t1"]) + 0.05
            near = [w for w in f.get("timeline") or [] if w["t1"] >= lo and w["t0"] <= hi]
            writes = [{"client": str(w.get("client") or ""), "value": w["value"], "region": str(w.get("region") or "—"),
                       "sent": off(w["t0"]), "acked": off(w["t1"]) if w.get("ok") else "not acknowledged",
                       "stamped": off(w["ts"]) if w.get("ts") is not None else "—",
                       "role": "lost to the next" if w["value"] == loser else
                               "overwrote it" if w["value"] == winner else
                               "final" if w["value"] in final else ""}
                      for w in near]
            timelines.append({"title": title, "key": f["key"], "writes": writes,
                              "final": ", ".join(sorted(final)) or "none"})
    rpo = m.get("rpo_items_s")
    return {"rows": rows, "timelines": timelines, "regions": ", ".join(m.get("regions_audited") or []) or "none",
            "rpo": "not audited" if rpo is None else fmt.dur(rpo)}
