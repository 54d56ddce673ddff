"""What the report says, decided once for both report.html and summary.md: the targets-vs-measured
rows, the findings in plain words, and the verdict sentence.

summary.json's checks are the authority on pass/fail. Each check is attached to the row of the
measure it judges (by its name); a check that fits no row gets a row of its own, so no check is
ever left out. Only the per-class RTO rows are judged here, against the `rto` target, because
docs/measurements.md defines that target as holding for every class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from drillkit.judge import checks
from drillkit.report import fmt

CLASS_ORDER = ("write", "read")
AUDITED_ROWS = frozenset({"rpo", "lost", "lost_after", "integrity"})
"""Rows whose figures come from the data audit: "not audited" when it could not run."""


@dataclass
class Row:
    key: str
    label: str
    target: str = "—"
    measured: str = "—"
    detail: str = ""
    status: str = "none"  # pass | fail | none (no target or no check)
    checks: list[dict[str, Any]] = field(default_factory=list)
    finding: str = ""
    raw_target: str = "—"

    @property
    def badge(self) -> str:
        """What an unjudged row says: a target with no check is not the same as no target."""
        return {"pass": "PASS", "fail": "FAIL"}.get(
            self.status, "no target" if self.target == "—" else "not checked")


def _norm(name: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower())


_ROW_OF_KIND = {checks.RPO: "rpo", checks.LOST_WRITES: "lost", checks.INTEGRITY: "integrity",
               checks.AVAILABILITY: "availability", checks.REPLICATION_LAG: "lag",
               checks.RECOVERED: "recovered"}
JOURNAL_KINDS = frozenset({checks.EXPERIMENT, checks.RUNBOOK_STEP, checks.ROLLBACK})
"""Checks the activities table shows; they are findings when they fail, not rows of targets."""


def kind_of(check: dict[str, Any]) -> str | None:
    """The row a check belongs to, from its kind (drillkit.judge.checks)."""
    kind = checks.kind_of(check)
    if kind == checks.RTO:
        cls = str(check.get("name")).removeprefix("rto").strip("_")
        return f"rto:{cls}" if cls in CLASS_ORDER else "rto"
    return _ROW_OF_KIND.get(kind, kind)


def _cap(cls: str) -> str:
    return f"{cls}s".capitalize() if cls in CLASS_ORDER else f"{cls} operations"


def _target_of(checks: list[dict], targets: dict, *keys: str) -> Any:
    for c in checks:
        if c.get("target") not in (None, ""):
            return c["target"]
    for k in keys:
        if targets.get(k) is not None:
            return targets[k]
    return None


def _status(checks: list[dict]) -> str:
    if not checks:
        return "none"
    return "pass" if all(c.get("passed") is True for c in checks) else "fail"


def _rto_classes(m: dict) -> dict[str, dict]:
    by_op = m.get("rto_by_op")
    if isinstance(by_op, dict) and by_op:
        found = {str(k): (v if isinstance(v, dict) else {"rto_s": v}) for k, v in by_op.items()}
    else:
        found = {cls: {"rto_s": m[f"rto_{cls}_s"]} for cls in CLASS_ORDER if f"rto_{cls}_s" in m}
    order = [c for c in CLASS_ORDER if c in found] + sorted(c for c in found if c not in CLASS_ORDER)
    return {c: found[c] for c in order}


TIME_KINDS = frozenset({checks.RTO, checks.RTO_OP, checks.RPO, checks.RPO_STORE, checks.PHASE,
                        checks.TIME_TO_DETECT, checks.REPLICATION_LAG, checks.BACKUP_AGE, checks.RESTORE_TIME})
"""Check kinds whose target and measure are durations, which `time_scale` scales."""


def at_scale(rows: list[Row], scale: float) -> list[Row]:
    """Beside each scaled duration (target and measured), the production time it stands for."""
    if scale == 1:
        return rows
    for row in rows:
        timed = [c for c in row.checks if checks.kind_of(c) in TIME_KINDS]
        if not timed or len(timed) != len(row.checks):
            continue
        c = max(timed, key=lambda c: fmt.num(c.get("measured")) or 0.0)
        if fmt.num(c.get("measured")) is not None:
            row.measured += f" ({fmt.at_scale(c['measured'], scale)})"
        if fmt.num(c.get("target")) is not None:
            row.target += f" ({fmt.at_scale(c['target'], scale)})"
    return rows


def _clock(m: dict) -> str:
    """How far the load workers' clocks leave a time measured across them uncertain."""
    u = fmt.num(m.get("clock_uncertainty_s"))
    return "" if u is None else f" ± {u * 1000:.1f} ms (clock)"


SOURCES = {"system call": "taken at the signal's system call", "provider": "reported by the fault's provider",
           "activity": "the fault activity's start and end (its provider reported no instant)"}


def _fault_row(m: dict, by_kind: dict[str | None, list[dict]]) -> Row | None:
    """The fault's instant and the interval it is known to lie in, or why there is none."""
    failed = by_kind.pop("fault", [])
    t, why = fmt.num(m.get("t_fault")), m.get("not_measured")
    if t is None and not why:
        return None
    row = Row("fault", "Fault — the instant RTO and RPO are measured from", checks=failed)
    if t is None:
        row.measured, row.status, row.finding = "not measured", "fail", f"RTO and RPO {why}."
        row.detail = why
        return row
    lo, hi = fmt.num(m.get("t_fault_lo")), fmt.num(m.get("t_fault_hi"))
    row.measured = f"{fmt.clock(t)} UTC"
    bits = []
    if lo is not None and hi is not None:
        bits.append(f"within [{fmt.clock(lo)}, {fmt.clock(hi)}] UTC ({(hi - lo) * 1000:.1f} ms wide)")
    if m.get("t_fault_source"):
        bits.append(SOURCES.get(m["t_fault_source"], str(m["t_fault_source"])))
    around = fmt.num(m.get("writes_lost_around_fault"))
    if around:
        bits.append(f"{fmt.plural(int(around), 'lost write', 'lost writes')} acknowledged inside it: "
                    "around the fault, neither before nor after it")
    row.detail = " · ".join(bits)
    return row


def build_rows(summary: dict) -> list[Row]:
    m = summary.get("measures") or {}
    targets = summary.get("targets") or {}
    by_kind: dict[str | None, list[dict]] = {}
    for c in summary.get("checks") or []:
        if isinstance(c, dict) and checks.kind_of(c) not in JOURNAL_KINDS:
            by_kind.setdefault(kind_of(c), []).append(c)
    rows: list[Row] = []
    fault = _fault_row(m, by_kind)
    if fault is not None:
        rows.append(fault)
    unknown = "not measured" if m.get("not_measured") else "not recovered"

    rto_checks = by_kind.pop("rto", [])  # judged in the class rows (or the service row below), never again raw
    rto_target = _target_of(rto_checks, targets, "rto")
    class_results = []
    for cls, info in _rto_classes(m).items():
        own = by_kind.pop(f"rto:{cls}", [])
        target = _target_of(own, targets, f"rto_{cls}") if own else rto_target
        rto = fmt.num(info.get("rto_s"))
        row = Row(f"rto:{cls}", f"RTO — {cls}s" if cls in CLASS_ORDER else f"RTO — {cls}",
                  target=f"≤ {fmt.human_target(target, True)}" if target is not None else "—",
                  measured=fmt.secs(rto, none=unknown) + (_clock(m) if rto is not None else ""),
                  checks=own)
        bits = []
        if fmt.num(info.get("resolution_s")) is not None:
            bits.append(f"resolution ±{fmt.secs(info['resolution_s'])}")
        if fmt.num(info.get("failures")) is not None:
            bits.append(fmt.plural(info["failures"], "failure", "failures"))
        if fmt.num(info.get("t_recovered")) is not None:
            bits.append(f"recovered {fmt.clock(info['t_recovered'])} UTC")
        row.detail = " · ".join(bits)
        limit = fmt.seconds_of(target) if target is not None else None
        if own:
            row.status = _status(own)
        elif limit is not None:
            row.status = "pass" if rto is not None and rto <= limit + 1e-9 else "fail"
        if row.status == "fail" and m.get("not_measured"):
            row.finding = f"RTO of {cls}s {m['not_measured']}."
        elif row.status == "fail":
            row.finding = (
                f"{_cap(cls)} were unavailable for {fmt.secs(rto)}; the target is "
                f"{fmt.human_target(target, True)}." if rto is not None else
                f"{_cap(cls)} never recovered: failures"
                + (f" from {fmt.clock(info['t_first_failure'])} UTC"
                   if fmt.num(info.get("t_first_failure")) is not None else "")
                + f" lasted until the load ended; the target is {fmt.human_target(target, True)}.")
        class_results.append(row.status)
        rows.append(row)
    if (m.get("clients_failed") or 0) > 1:
        rows.append(Row("rto_last_client", "RTO — the last client back", target="—",
                        measured=fmt.secs(fmt.num(m.get("rto_last_client_s")), none="not recovered"),
                        detail=f"{m['clients_failed']} of {m.get('clients')} clients failed after the fault; "
                               "each is back at its first success after its own last failure"))
    if not class_results and not rto_checks and fmt.num(m.get("rto_s")) is not None:
        rows.append(Row("rto", "RTO — service", measured=fmt.secs(m["rto_s"]),
                        target=f"≤ {fmt.human_target(rto_target, True)}" if rto_target else "—"))
    if rto_checks:
        agree = class_results and (_status(rto_checks) == "pass") == all(
            s == "pass" for s in class_results)
        if not agree:
            row = Row("rto", "RTO — service (slowest class)", measured=fmt.secs(
                m.get("rto_s"), none=unknown), checks=rto_checks)
            row.target = f"≤ {fmt.human_target(rto_target, True)}"
            row.status = _status(rto_checks)
            if row.status == "fail" and m.get("not_measured"):
                row.finding = f"RTO {m['not_measured']}."
            elif row.status == "fail":
                row.finding = (f"The service was unavailable for {fmt.secs(m.get('rto_s'))}; the "
                               f"target is {fmt.human_target(rto_target, True)}." if fmt.num(m.get("rto_s"))
                               is not None else "The service never recovered before the load ended.")
            rows.append(row)

    held = by_kind.pop("recovered", [])
    if held:
        stuck = m.get("not_recovered") or []
        row = Row("recovered", "Recovery held for the stable window", target="every op class",
                  measured="yes" if not stuck else "no: " + ", ".join(map(str, stuck)),
                  status=_status(held), checks=held)
        if row.status == "fail" and not any("never recovered" in r.finding for r in rows):
            row.finding = str(held[0].get("message") or "Some operation class never recovered.")
        rows.append(row)

    rpo = fmt.num(m.get("rpo_s"))
    t_fault = fmt.num(m.get("t_fault"))
    row = _simple(by_kind, targets, "rpo", "RPO", "≤", fmt.secs(rpo) + (_clock(m) if rpo is not None else ""),
                  ("rpo",), show=_seconds)
    if rpo and t_fault is not None:
        row.detail = f"recovery point {fmt.clock(t_fault - rpo)} UTC"
    stores = m.get("rpo_by_store") or {}
    if len(stores) > 1:
        row.detail = " · ".join(filter(None, [row.detail, ", ".join(
            f"{store} {fmt.secs(v.get('rpo_s'))} ({fmt.count(v.get('writes_lost'))} of "
            f"{fmt.count(v.get('writes_acked'))} lost)" for store, v in stores.items())]))
    if row.status == "fail" and m.get("not_measured"):
        row.measured, row.finding = "not measured", f"RPO {m['not_measured']}."
    elif row.status == "fail":
        row.finding = (f"The recovery point was {fmt.secs(rpo)} before the fault: the earliest "
                       f"lost write was acknowledged at "
                       f"{fmt.clock(t_fault - (rpo or 0)) if t_fault else '—'} UTC; the target is "
                       f"{fmt.human_target(row.raw_target, True)}.")
    rows.append(row)

    lost = m.get("writes_lost")
    row = _simple(by_kind, targets, "lost", "Lost acknowledged writes", "≤", fmt.count(lost),
                  ("max_lost_writes", "lost_writes"))
    window = m.get("lost_window")
    when = ""
    if isinstance(window, (list, tuple)) and len(window) == 2:
        when = f", acknowledged between {fmt.clock(window[0])} and {fmt.clock(window[1])} UTC"
        row.detail = f"acknowledged {fmt.clock(window[0])} – {fmt.clock(window[1])} UTC"
    if fmt.num(m.get("writes_acked")) is not None:
        row.detail = " · ".join(filter(None, [f"of {fmt.count(m['writes_acked'])} acknowledged",
                                              row.detail]))
    if row.status == "fail":
        row.finding = (f"{fmt.plural(lost, 'acknowledged write was', 'acknowledged writes were')}"
                       f" lost{when}; the target allows {row.raw_target}.")
    rows.append(row)

    after = m.get("writes_lost_after_fault")
    row = _simple(by_kind, targets, "lost_after", "Lost writes acknowledged after the fault", "≤",
                  fmt.count(after), ("max_lost_after_fault", "max_lost_writes_after_fault"))
    row.detail = "split brain: acknowledged by a region that was no longer authoritative"
    if row.status == "fail":
        row.finding = (f"{fmt.plural(after, 'write', 'writes')} acknowledged after the fault "
                       f"{'was' if fmt.num(after) == 1 else 'were'} lost (split brain); the target "
                       f"allows {row.raw_target}.")
    rows.append(row)

    corrupt, unexpected = m.get("records_corrupt"), m.get("records_unexpected")
    row = _simple(by_kind, targets, "integrity", "Integrity — corrupt / unexpected records", "≤",
                  f"{fmt.count(corrupt)} / {fmt.count(unexpected)}", ("max_corrupt",))
    if row.status == "fail":
        parts = []
        if fmt.num(corrupt):
            parts.append(f"{fmt.plural(corrupt, 'record differs', 'records differ')} from the "
                         "last acknowledged write of its key")
        if fmt.num(unexpected):
            parts.append(f"{fmt.plural(unexpected, 'record was', 'records were')} present "
                         "but never written")
        text = "; ".join(parts) or "The integrity check failed"
        row.finding = f"{text[0].upper()}{text[1:]}; the target allows {row.raw_target}."
    rows.append(row)

    avail = m.get("availability")
    row = _simple(by_kind, targets, "availability", "Availability", "≥", fmt.pct(avail),
                  ("min_availability", "availability"), show=fmt.pct)
    if fmt.num(m.get("ops_total")) is not None:
        row.detail = f"of {fmt.count(m['ops_total'])} operations"
    if row.status == "fail":
        row.finding = f"Availability was {fmt.pct(avail)}; the target is {fmt.pct(row.raw_target)}."
    rows.append(row)

    lag = m.get("max_replication_lag_s")
    row = _simple(by_kind, targets, "lag", "Max replication lag", "≤", fmt.secs(lag),
                  ("max_replication_lag", "max_lag"), show=_seconds)
    details = []
    if fmt.num(m.get("max_replication_lag_bytes")) is not None:
        details.append(f"{fmt.nbytes(m['max_replication_lag_bytes'])} behind at most")
    if fmt.num(m.get("max_object_backlog")) is not None:
        details.append(f"objects: backlog ≤ {fmt.count(m['max_object_backlog'])}, oldest "
                       f"{fmt.secs(m.get('max_object_backlog_age_s'))}")
    if details:
        row.detail = "; ".join(details)
    if row.status == "fail":
        row.finding = (f"Replication lag reached {fmt.secs(lag)}; the target is "
                       f"{fmt.human_target(row.raw_target, True)}.")
    rows.append(row)

    raw = {"rpo": m.get("rpo_s"), "lost": lost, "lost_after": after, "availability": avail,
           "lag": lag, "integrity": None if corrupt is None and unexpected is None else 0}
    not_audited = m.get("audited") is False
    for row in rows:
        if row.key in raw and fmt.num(raw[row.key]) is None:
            if not_audited and row.key in AUDITED_ROWS:
                row.measured = "not audited"
                if row.status == "fail":
                    row.finding = (f"{row.label} is unknown: the data audit could not read the final state, "
                                   f"so nothing is known of the data (unknown is not lost); the target is "
                                   f"{row.target.lstrip('≤≥ ')}.")
                continue
            row.measured = "not measured"
            if row.status == "fail":
                row.finding = (f"{row.label} was not measured (the evidence holds no result for "
                               f"it); the target is {row.target.lstrip('≤≥ ')}.")

    for c in [c for kind in list(by_kind) for c in by_kind.pop(kind)]:
        label, target, measured = _own_row(c)
        row = Row(f"check:{c.get('name')}", label, target=target, measured=measured,
                  detail=str(c.get("message") or ""), status=_status([c]), checks=[c])
        if row.status == "fail":
            row.finding = str(c.get("message") or f"{c.get('name')}: measured "
                              f"{_plain(c.get('measured'))}; the target is {c.get('target')}.")
        rows.append(row)
    return rows


def _own_row(c: dict[str, Any]) -> tuple[str, str, str]:
    """Label, target and measured figure of a check with a row of its own (phase budgets, alarms,
    RPO per store, time to detect, and any kind this report does not know)."""
    kind, subject = checks.kind_of(c), c.get("subject")
    target, measured = c.get("target"), c.get("measured")
    if kind == checks.PHASE:
        return (f"Phase — {subject}", f"≤ {fmt.human_target(target, True)}",
                fmt.secs(fmt.num(measured), none="not run"))
    if kind == checks.RTO_OP:
        return f"RTO — {subject} ops", f"≤ {fmt.human_target(target, True)}", fmt.secs(fmt.num(measured))
    if kind == checks.RPO_STORE:
        return f"RPO — {subject}", f"≤ {fmt.human_target(target, True)}", fmt.secs(fmt.num(measured))
    if kind == checks.TIME_TO_DETECT:
        return "Time to detect (slowest alarm)", f"≤ {fmt.human_target(target, True)}", fmt.secs(fmt.num(measured))
    if kind == checks.BACKUP_AGE:
        return "Backup age at the restore test", f"≤ {fmt.human_target(target, True)}", fmt.secs(fmt.num(measured))
    if kind == checks.RESTORE_TIME:
        return "Restore test time", f"≤ {fmt.human_target(target, True)}", fmt.secs(fmt.num(measured))
    if kind == checks.RESTORE_TEST:
        return f"Restore test — {subject}", "verified, torn down", "verified" if measured else "not verified"
    if kind == checks.ALARM:
        return (f"Alarm — {subject}", "raised" if target == "fire" else "stays quiet",
                "raised" if measured else "not raised")
    return str(c.get("name")), str(target if target is not None else "—"), _plain(measured)


def _seconds(target: Any) -> str:
    return fmt.human_target(target, True)


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "—" if v is None else str(v)


def _simple(by_kind, targets, kind, label, op, measured, target_keys, show=fmt.human_target) -> Row:
    checks = by_kind.pop(kind, [])
    target = _target_of(checks, targets, *target_keys)
    row = Row(kind, label, measured=measured, checks=checks, status=_status(checks))
    row.raw_target = "—" if target is None else str(target)
    if target is not None:
        row.target = f"{op} {show(target)}"
    return row


def findings(summary: dict, rows: list[Row], abort_reason: str | None) -> list[str]:
    out = [r.finding for r in rows if r.finding]
    verdict = str(summary.get("verdict") or "").lower()
    if verdict == "aborted":
        out.insert(0, f"The drill was aborted ({abort_reason or 'no reason recorded'}); "
                      "measurements cover only what ran before it stopped.")
    if verdict != "pass":
        told = {str(c.get("message")) for r in rows for c in r.checks if isinstance(c, dict)}
        out += [str(r) for r in summary.get("reasons") or []
                if str(r) not in told and not (abort_reason and abort_reason in str(r))]
    if verdict != "pass" and not out:
        out = ["summary.json gives no reason for this verdict."]
    return out


def sentence(summary: dict, rows: list[Row], abort_reason: str | None) -> str:
    verdict = str(summary.get("verdict") or "").lower()
    judged = [r for r in rows if r.status != "none"]
    missed = [r for r in judged if r.status == "fail"]
    if verdict == "aborted":
        return f"The drill was stopped before its end: {abort_reason or 'no reason recorded'}."
    if verdict == "fail":
        if missed:
            names = ", ".join(r.label for r in missed)
            return f"{len(missed)} of {len(judged)} objectives missed: {names}."
        return "The drill failed: " + ("; ".join(map(str, summary.get("reasons") or [])) or
                                       "no reason recorded") + "."
    if not verdict:
        return "summary.json gives no verdict."
    if verdict != "pass":
        return f"summary.json gives the verdict {verdict!r}, which is none of pass, fail, aborted."
    if not judged:
        return "The drill passed; summary.json holds no check against a target."
    rto = [f"{r.label.removeprefix('RTO — ')} recovered in {r.measured}" for r in rows
           if r.key.startswith("rto:")]
    lost = fmt.num((summary.get("measures") or {}).get("writes_lost"))
    tail = [", ".join(rto)] if rto else []
    if lost is not None:
        tail.append(fmt.plural(lost, "acknowledged write", "acknowledged writes") + " lost")
    head = f"Every target held ({len(judged)} checked)"
    return head + (": " + "; ".join(tail) if tail else "") + "."
