"""The command line. The only place where exceptions become exit codes.

0 every target holds · 1 a target was missed · 2 bad input or usage (nothing started) ·
3 aborted (signal, safeguard, harness error) after rollbacks and teardown.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from drillkit.errors import DrillkitError, EvidenceError, InputError

EXIT_PASS, EXIT_FAIL, EXIT_INPUT, EXIT_ABORTED = 0, 1, 2, 3
EXIT_UNCHECKED = 4
"""`verify` only: every hash matches, but the manifest is signed and no key was given."""
VERDICT_EXIT = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "aborted": EXIT_ABORTED}
DEFAULT_SANDBOX_STATE = Path(".drillkit") / "sandbox-state"


def _clean(text: object) -> str:
    """What the terminal may show of a text from evidence or input: secrets recognised by their
    shape redacted (drillkit.redact), control characters escaped (drillkit.escape), one line."""
    from drillkit.escape import terminal
    from drillkit.redact import redact_shapes

    return terminal(redact_shapes(str(text)))


def _say(text: object = "", err: bool = False) -> None:
    click.echo(_clean(text), err=err)


def _fail(message: str, code: int) -> None:
    if os.environ.get("DRILLKIT_TRACEBACK") and sys.exc_info()[0] is not None:
        import traceback  # for drillkit's developers: the whole story of an internal error

        traceback.print_exc()
    _say(f"drillkit: {message}", err=True)
    sys.exit(code)


def _parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{pair!r} is not KEY=VALUE", field="--var")
        out[key] = value
    return out


def _print_summary(summary: dict, folder: Path) -> None:
    from drillkit.durations import format_duration
    from drillkit.report.fmt import at_scale, human_target

    m = summary.get("measures", {})
    verdict = summary.get("verdict", "?").upper()
    scale = _time_scale(folder)
    prod = (lambda v: f"  ({at_scale(v, scale)})" if at_scale(v, scale) else "")
    _say("")
    _say(f"verdict: {verdict}   scenario: {summary.get('scenario')}"
               + (f"   time scale {scale:g}: 1 s of drill is {human_target(scale, True)} in production"
                  if scale != 1 else ""))
    _say(f"  RTO   {format_duration(m.get('rto_s'))}  (writes {format_duration(m.get('rto_write_s'))}, "
               f"reads {format_duration(m.get('rto_read_s'))}){prod(m.get('rto_s'))}")
    _say(f"  RPO   {format_duration(m.get('rpo_s'))}{prod(m.get('rpo_s'))}")
    if m.get("audited") is False:
        _say(f"  lost writes not audited (the final state could not be read: unknown, not lost); "
                   f"{m.get('writes_acked')} acknowledged")
    else:
        _say(f"  lost writes {m.get('writes_lost')} of {m.get('writes_acked')} acknowledged "
                   f"({m.get('writes_lost_after_fault')} acknowledged after the fault); "
                   f"corrupt {m.get('records_corrupt')}, unexpected {m.get('records_unexpected')}"
                   + (f", indeterminate {m['records_indeterminate']}" if "records_indeterminate" in m else ""))
    if "items_acked" in m:
        if m.get("items_acked") is None:
            _say("  global table not audited (its final state could not be read: unknown, not lost)")
        else:
            _say(f"  global table: {m['items_acked']} writes acknowledged; {m['items_lost']} lost, "
                       f"{m['lww_discarded']} discarded by LWW, {m['lww_anomalies']} LWW anomalies, "
                       f"{m['items_resynced']} resynced; {m['items_divergent']} divergent keys")
    for check in summary.get("checks", []):
        mark = "ok  " if check.get("passed") else "MISS"
        _say(f"  [{mark}] {check.get('message') or check.get('name')}")
    for reason in summary.get("reasons", []):
        _say(f"  reason: {reason}")
    _say(f"evidence: {folder}")
    _print_seal(folder)


def _print_seal(folder: Path) -> None:
    """Who signed the folder, and the register that names it."""
    from drillkit.evidence.manifest import read_manifest
    from drillkit.evidence.register import REGISTER

    try:
        manifest = read_manifest(folder)
    except DrillkitError:
        return
    signer = manifest.get("signer") or ("a shared key (HMAC)" if manifest.get("signed") else "nobody (unsigned)")
    _say(f"sealed: signed by {signer}; registered in {folder.parent / REGISTER}")


def _time_scale(folder: Path) -> float:
    """The stored scenario's time_scale (1 when it has none or cannot be read)."""
    from drillkit.evidence import SCENARIO
    from drillkit.yamlfile import load_yaml

    try:
        scale = (load_yaml(folder / SCENARIO, "scenario") or {}).get("time_scale")
    except (InputError, AttributeError):
        return 1.0
    return float(scale) if isinstance(scale, (int, float)) and scale > 0 else 1.0


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; 8.1 prints help itself


class _OneLineUsage(click.Group):
    """Usage mistakes get the same single `drillkit: ...` line as every other bad input."""

    def main(self, *args, **kwargs):
        if not kwargs.pop("standalone_mode", True):
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _NO_ARGS_IS_HELP as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(EXIT_INPUT)
        except click.UsageError as exc:
            path = exc.ctx.command_path if exc.ctx else "drillkit"
            sub = path.partition(" ")[2]
            _fail(f"{sub + ': ' if sub else ''}{exc.format_message()} (see {path} --help)", EXIT_INPUT)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", EXIT_ABORTED)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineUsage, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="drillkit")
def main() -> None:
    """Run disaster-recovery drills and prove their outcome."""


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="evidence folder to create (absent or empty)")
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE",
              help="override an experiment configuration key (repeatable)")
@click.option("--quiet", is_flag=True, help="no progress lines")
@click.option("--yes", is_flag=True, help="drill a real (not emulated) AWS account: see `drillkit plan` first")
def run(scenario: Path, out: Path | None, variables: tuple[str, ...], quiet: bool, yes: bool) -> None:
    """Run the drill described by SCENARIO and write its evidence folder."""
    from drillkit.run.drill import Drill, default_out
    from drillkit.scenario import load_scenario

    try:
        loaded = load_scenario(scenario)
        drill = Drill(loaded, out or default_out(loaded.name), _parse_vars(variables),
                      progress=None if quiet else (lambda msg: _say(msg, err=True)), confirmed=yes)
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    except Exception as exc:  # a harness bug before anything started: one line, not a traceback
        _fail(f"internal error before the drill: {type(exc).__name__}: {exc}", EXIT_ABORTED)
    try:
        outcome = drill.run()
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    except DrillkitError as exc:
        _fail(str(exc), EXIT_ABORTED)
    except Exception as exc:  # a harness bug: say so in one line, keep the exit code honest
        _fail(f"internal error after the drill: {type(exc).__name__}: {exc}", EXIT_ABORTED)
    _print_summary(outcome.summary, outcome.folder)
    if not quiet:
        _say("stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in outcome.stages.items()), err=True)
    sys.exit(VERDICT_EXIT.get(outcome.verdict, EXIT_ABORTED))


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
def validate(scenario: Path) -> None:
    """Check a scenario and its experiment without starting anything."""
    from drillkit.load.canary import canary_workload
    from drillkit.run.preflight import check_operator
    from drillkit.scenario import load_experiment, load_scenario
    from drillkit.targets import check_fit

    try:
        loaded = load_scenario(scenario)
        experiment = load_experiment(loaded.experiment_path)
        check_fit(loaded, experiment)
        check_operator(loaded, experiment)
        _, canary_off = canary_workload(loaded)
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    except Exception as exc:  # a validator bug: one line, and not the exit code of a user's mistake
        _fail(f"{scenario}: internal error while validating: {type(exc).__name__}: {exc}", EXIT_ABORTED)
    if canary_off:
        _say(f"{scenario}: note: {canary_off}")
    _say(f"{scenario}: valid")


@main.command("plan")
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE",
              help="override an experiment configuration key (repeatable)")
def plan_cmd(scenario: Path, variables: tuple[str, ...]) -> None:
    """Print every mutating AWS call the drill of SCENARIO would make, with its parameters and what
    undoes it, and make none (the session refuses mutating calls). `system.kind: aws` only."""
    from drillkit.scenario import apply_vars, load_experiment, load_scenario
    from drillkit.targets import check_fit, plugin

    try:
        loaded = load_scenario(scenario)
        planner = plugin(loaded.scenario.system.kind)
        if not hasattr(planner, "plan"):
            raise InputError(f"system.kind is {loaded.scenario.system.kind}: only an aws scenario has a plan",
                             file=str(scenario), field="system.kind")
        experiment = apply_vars(load_experiment(loaded.experiment_path), _parse_vars(variables), str(loaded.path))
        check_fit(loaded, experiment)
        plan = planner.plan(loaded, experiment)
    except InputError as exc:
        _fail(str(exc.in_file(str(scenario))), EXIT_INPUT)
    except DrillkitError as exc:
        _fail(str(exc), EXIT_ABORTED)
    for line in plan.lines():
        _say(line)


@main.command("init")
@click.argument("folder", required=False, default=Path("."), type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["external", "sandbox"]), default="external", show_default=True,
              help="external: a system you run; sandbox: drillkit's embedded one")
def init_cmd(folder: Path, kind: str) -> None:
    """Write a workspace (scenario, experiment, workload or locustfile, probes, README) into FOLDER
    (absent or empty; default: here) that passes `drillkit validate` as written."""
    from drillkit.scenario.starter import next_step, write_workspace

    try:
        written = write_workspace(folder, kind)
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    for rel in written:
        _say(f"wrote {folder / rel}")
    _say(f"next: {next_step(folder, kind)}")


@main.command("measure")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def measure_cmd(folder: Path) -> None:
    """Recompute the measures from an evidence folder alone.

    An unsealed folder gets a new summary.json. A sealed one (manifest.json) is evidence and is
    not rewritten: its stored measures are compared with the recomputed ones instead.
    """
    from drillkit import evidence as ev
    from drillkit.judge import summarize, write_summary
    from drillkit.measure import compare_measures

    try:
        summary = summarize(folder)
        sealed = (folder / ev.MANIFEST).exists()
        stored = _stored_summary(folder) if sealed else None
        if not sealed:
            write_summary(folder, summary)
    except (EvidenceError, InputError) as exc:
        _fail(str(exc), EXIT_INPUT)
    except Exception as exc:  # a measure bug: one line, and not the exit code of a missed target
        _fail(f"{folder}: internal error while measuring: {type(exc).__name__}: {exc}", EXIT_ABORTED)
    _print_summary(summary, folder)
    if stored is not None:
        differences = compare_measures(stored, summary["measures"])
        if differences:
            for line in differences:
                _say(f"differs  {line}")
            _fail(f"{folder}: {len(differences)} stored measures do not reproduce", EXIT_FAIL)
        _say(f"sealed folder: all {len(summary['measures'])} stored measures reproduce from the evidence")
    sys.exit(VERDICT_EXIT.get(summary["verdict"], EXIT_ABORTED))


def _stored_summary(folder: Path) -> dict:
    """The measures a sealed folder's summary.json stores; EvidenceError when it holds none."""
    from drillkit import evidence as ev

    path = folder / ev.SUMMARY
    try:
        stored = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise EvidenceError(f"{path}: missing from a sealed folder (see drillkit verify)") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise EvidenceError(f"{path}: not readable JSON ({type(exc).__name__}: {exc})") from None
    measures = stored.get("measures") if isinstance(stored, dict) else None
    if not isinstance(measures, dict):
        raise EvidenceError(f"{path}: not a drill summary (an object with a measures object)")
    return measures


@main.command("report")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="key to re-sign a signed manifest.json (else DRILLKIT_SIGNING_KEY[_FILE])")
@click.option("--pdf", "pdf", is_flag=False, flag_value="", default=None, metavar="[PATH]",
              help="print the sealed report to PDF (default FOLDER.pdf beside it) instead of re-rendering")
def report_cmd(folder: Path, key_file: Path | None, pdf: str | None) -> None:
    """Re-render report.html from an evidence folder; a sealed folder is re-sealed only if it
    verified before (exit 1, naming the files, if it did not). With --pdf, print the sealed
    report through headless Chromium, headed by its seal (the manifest's SHA-256 and signer)."""
    from drillkit.evidence.manifest import ManifestMismatch, refresh_manifest
    from drillkit.report import render_report

    try:
        if pdf is not None:
            from drillkit.report.pdf import print_pdf

            path = print_pdf(folder, pdf or None)
        else:
            path = refresh_manifest(folder, lambda: render_report(folder), key_file)
    except ManifestMismatch as exc:
        for line in exc.result.lines():
            _say(line)
        _fail(f"{exc}; not re-rendered", EXIT_FAIL)
    except (EvidenceError, InputError) as exc:
        _fail(str(exc), EXIT_INPUT)
    except Exception as exc:  # a renderer bug: one line, not a traceback
        _fail(f"{folder}: internal error while reporting: {type(exc).__name__}: {exc}", EXIT_ABORTED)
    _say(str(path))


@main.group()
def keys() -> None:
    """Ed25519 signing keys: the private key signs drills, the public key verifies them."""


@keys.command("new")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="drillkit", show_default=True, help="the key files' name: NAME.key, NAME.pub")
def keys_new(folder: Path, name: str) -> None:
    """Write FOLDER/NAME.key (private, mode 0600) and FOLDER/NAME.pub (give this one to auditors)."""
    from drillkit.evidence.signing import KEY_FILE_ENV, new_key_pair

    try:
        private, public, fingerprint = new_key_pair(folder, name)
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    _say(f"private key: {private} (sign with: export {KEY_FILE_ENV}={private})")
    _say(f"public key:  {public} (verify with: drillkit verify DIR --public-key {public})")
    _say(f"fingerprint: {fingerprint}")


@main.command("note")
@click.argument("text")
@click.option("--drill", "drill", type=click.Path(file_okay=False, path_type=Path),
              help="the running drill's evidence folder (default: the latest running drill under --under)")
@click.option("--under", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True,
              help="where to look for the running drill")
def note_cmd(text: str, drill: Path | None, under: Path) -> None:
    """Write an observation into a running drill's evidence, from another terminal: timestamped,
    with who wrote it, shown on the report's timeline."""
    from drillkit.run.notes import add_note, running_drill

    try:
        folder = drill if drill is not None else running_drill(under)
        add_note(folder, text)
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    _say(f"noted in {folder}")


@main.command("pack")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="archive to write (default FOLDER.tar.gz)")
def pack_cmd(folder: Path, out: Path | None) -> None:
    """One archive of a sealed evidence folder (and its register entries), for an auditor to verify
    offline: drillkit verify ARCHIVE --public-key KEY.pub."""
    from drillkit.evidence.pack import pack

    try:
        path = pack(folder, out)
    except (EvidenceError, InputError) as exc:
        _fail(str(exc), EXIT_INPUT)
    _say(str(path))


@main.group()
def sandbox() -> None:
    """Bring the embedded two-region sandbox up or down by hand (for `chaos run`)."""


@sandbox.command("up")
@click.option("--scenario", type=click.Path(dir_okay=False, path_type=Path),
              help="take the system settings from this scenario")
@click.option("--pointer", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_SANDBOX_STATE,
              show_default=True, help="file that remembers where the sandbox state is")
@click.option("--emulate", type=click.Choice(["aws"]), help="also start an emulated AWS account over the sandbox")
@click.option("--yes", is_flag=True, help="attach to a real AWS account (an aws scenario)")
def sandbox_up(scenario: Path | None, pointer: Path, emulate: str | None, yes: bool) -> None:
    """Bring the sandbox up (or, with an external or aws scenario, attach to its system) and print
    what `chaos run` needs."""
    from drillkit.scenario import ObjectStoreSpec, SandboxSpec, load_scenario
    from drillkit.targets import session

    try:
        loaded = load_scenario(scenario) if scenario else None
        spec = loaded.scenario.system if loaded else SandboxSpec(objects=ObjectStoreSpec() if emulate else None)
        if pointer.exists():
            raise InputError("a sandbox is already up; run `drillkit sandbox down` first", file=str(pointer))
        if loaded is not None:
            from drillkit.run.preflight import check_environment

            check_environment(loaded, confirmed=yes)
        state, lines = session.up(spec, loaded.path.parent if loaded else None, pointer, emulate)
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    except DrillkitError as exc:
        _fail(str(exc), EXIT_ABORTED)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(state))
    session.release(state)
    for line in lines:
        _say(line)
    _say(f"export DRILLKIT_SANDBOX={state}")


def _pointed_state(pointer: Path) -> str:
    """The state file the pointer (else DRILLKIT_SANDBOX) names; InputError when there is none or
    the pointer is not one line of UTF-8 naming a file."""
    env = os.environ.get("DRILLKIT_SANDBOX")
    if pointer.exists():
        try:
            data = pointer.read_bytes()[:4097]
            state = data.decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"not a sandbox pointer ({type(exc).__name__})", file=str(pointer)) from None
        if not state or len(data) > 4096 or "\n" in state or "\0" in state:
            raise InputError("not a sandbox pointer (one line naming a state file)", file=str(pointer))
        return state
    if env:
        return env
    raise InputError("no sandbox is up here", file=str(pointer))


@sandbox.command("down")
@click.option("--pointer", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_SANDBOX_STATE,
              show_default=True)
def sandbox_down(pointer: Path) -> None:
    from drillkit.targets import reap_stale, session

    stale = reap_stale()
    for root in stale:
        _say(f"reaped the sandbox of a killed drill or sandbox up: {root}")
    try:
        state = _pointed_state(pointer)
    except InputError as exc:
        if stale:
            return
        _fail(str(exc), EXIT_INPUT)
    try:
        done = session.down(state)
    except InputError as exc:
        _fail(str(exc.in_file(str(state))), EXIT_INPUT)
    pointer.unlink(missing_ok=True)
    _say(done)


@sandbox.command("status")
@click.option("--pointer", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_SANDBOX_STATE,
              show_default=True)
def sandbox_status(pointer: Path) -> None:
    from drillkit.targets import processes
    from drillkit.targets.sandbox.system import Sandbox

    try:
        box = Sandbox.attach(_pointed_state(pointer))
    except InputError as exc:
        _fail(str(exc), EXIT_INPUT)
    info = {
        "endpoint": box.endpoint, "state_file": str(box.state_file),
        "regions": {r.name: r.role for r in box.state.regions.values()},
        "processes": {p.name: ("up" if processes.is_ours(p) else "gone") for p in box.state.processes},
    }
    try:
        info["serving_region"] = box.serving_region()
        info["replication"] = [row.as_dict() for row in box.replication_status()]
    except Exception as exc:  # status must report a broken sandbox, not crash on it
        info["error"] = str(exc)
    from drillkit.redact import redact_shapes

    click.echo(redact_shapes(json.dumps(info, indent=2, default=str)))  # JSON escapes control characters itself


@main.command("verify")
@click.argument("target", required=False, type=click.Path(path_type=Path), metavar="FOLDER|ARCHIVE")
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Ed25519 public key (PEM) the drill must be signed with (drillkit keys new)")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="shared HMAC key the manifest was signed with (else DRILLKIT_SIGNING_KEY[_FILE])")
@click.option("--register", "register_folder", type=click.Path(file_okay=False, path_type=Path),
              help="check FOLDER/register.jsonl: the chain, each entry's signature, each drill's folder")
def verify_cmd(target: Path | None, public_key: Path | None, key_file: Path | None,
               register_folder: Path | None) -> None:
    """Check an evidence folder (or an archive from drillkit pack) against its manifest.json, or a
    register: 0 intact, 1 altered, a bad or stripped signature, or a drill removed, reordered or
    altered; 2 nothing to verify; 4 intact, but signed and no key was given to check it."""
    from drillkit.evidence.signing import trusted_key

    if (target is None) == (register_folder is None):
        _fail("give an evidence folder or archive, or --register FOLDER", EXIT_INPUT)
    try:
        trusted = trusted_key(public_key, key_file)
        if register_folder is not None:
            _verify_register(register_folder, trusted)
        elif target.is_file():
            from drillkit.evidence.pack import unpacked

            with unpacked(target) as folder:
                _verify_folder(folder, trusted, shown=target, registered=folder.parent / f"{folder.name}.register.jsonl")
        else:
            _verify_folder(target, trusted, shown=target)
    except (EvidenceError, InputError) as exc:
        _fail(str(exc), EXIT_INPUT)
    except Exception as exc:  # a verifier bug: one line, not a traceback
        _fail(f"{target or register_folder}: internal error while verifying: {type(exc).__name__}: {exc}",
              EXIT_ABORTED)


def _verify_folder(folder: Path, trusted: object, shown: Path, registered: Path | None = None) -> None:
    from drillkit.evidence.manifest import verify_manifest
    from drillkit.evidence.register import check_copied_entries

    result = verify_manifest(folder, trusted)
    if not result.ok:
        for line in result.lines():
            _say(line)
        _fail(f"{shown}: evidence does not match manifest.json ({result.counts()})", EXIT_FAIL)
    if registered is not None and registered.is_file():
        findings = check_copied_entries(folder, registered, trusted)
        for finding in findings:
            _say(finding.line())
        if any(f.fails for f in findings):
            _fail(f"{shown}: the register entries packed with the drill do not hold", EXIT_FAIL)
    _say(result.status())
    if result.signature == "unchecked":
        sys.exit(EXIT_UNCHECKED)


def _verify_register(folder: Path, trusted: object) -> None:
    from drillkit.evidence.register import REGISTER, check_register

    result = check_register(folder, trusted)
    for finding in result.findings:
        _say(finding.line())
    failing = sum(f.fails for f in result.findings)
    if failing:
        _fail(f"{folder / REGISTER}: {failing} finding(s); the register or its drills were tampered with", EXIT_FAIL)
    _say(f"OK  {len(result.entries)} entries chained; every sealed drill's folder matches its manifest; "
         f"head {result.head}" + ("; signatures NOT checked: no key given" if result.unchecked else ""))
    if result.unchecked:
        sys.exit(EXIT_UNCHECKED)


@main.command("history")
@click.argument("folder", required=False, default=Path("reports"),
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="judge readiness at this UTC date (default now)")
def history_cmd(folder: Path, as_of: datetime | None) -> None:
    """Trend of verdict, RTO, RPO and lost writes per scenario across the drills under FOLDER
    (default reports/), drills the register names whose folders are gone among them; readiness
    (last drill, next due, overdue); writes FOLDER/history.html, readiness.csv and readiness.json."""
    from drillkit.report.history import print_table, scan, write_html
    from drillkit.report.readiness import CSV, rows

    try:
        found = scan(folder)
        page = write_html(found, as_of.replace(tzinfo=timezone.utc) if as_of else None)
    except (EvidenceError, InputError) as exc:
        _fail(str(exc), EXIT_INPUT)
    except Exception as exc:  # a renderer bug: one line, not a traceback
        _fail(f"{folder}: internal error while reading the history: {type(exc).__name__}: {exc}", EXIT_ABORTED)
    print_table(found)
    for line in found.skipped:
        _say(f"skipped {line}", err=True)
    for row in rows(found, as_of.replace(tzinfo=timezone.utc) if as_of else datetime.now(timezone.utc)):
        if row.status != "no cadence":
            due = f", next due {row.next_due_utc}" if row.next_due_utc else ""
            _say(f"{row.status:<12} {row.system or '-'} / {row.scenario}: every {row.cadence}, last pass "
                 f"{row.last_pass_utc or 'never'}{due}")
    _say(f"trend page: {page} (readiness: {page.parent / CSV})")


if __name__ == "__main__":
    main()
