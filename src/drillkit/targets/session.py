"""A target held up across commands (`drillkit sandbox up` / `down`), for `chaos run` by hand.

The sandbox is started; an external system or AWS account is attached (a state folder and its
events file beside the pointer). Either way the target is owned by this process while it comes up,
so a kill half-way leaves it to the reaper, and released once the pointer names it
(`release`): from then on it outlives the command, until `down`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drillkit.errors import InputError
from drillkit.targets import attach, plugin, processes, verified_folder


def up(spec: Any, scenario_dir: Path | None, pointer: Path, emulate: str | None = None) -> tuple[Path, list[str]]:
    """Bring the target of `spec` up; its state file and the lines that tell the user how to reach it."""
    if spec.kind != "sandbox":
        if emulate:
            raise InputError("--emulate starts a sandbox: give no scenario, or a sandbox one", field="--emulate")
        pointer.parent.mkdir(parents=True, exist_ok=True)
        target = plugin(spec.kind).up(spec, events_file=pointer.parent.absolute() / f"{pointer.name}.events.jsonl",
                                      scenario_dir=scenario_dir, owned=True)
        return Path(target.state_file), [f"{spec.kind} target attached: endpoint {target.endpoint}"]
    box = plugin("sandbox").up(spec)
    lines = [f"sandbox up: endpoint {box.endpoint}"]
    if emulate:
        from drillkit.targets.aws.emulated import start

        try:
            account = start(box)
        except BaseException:
            box.down()
            raise
        lines += [f"emulated AWS account {account['account']} at {account['url']} "
                  f"(regions {', '.join(account['regions'])})",
                  f"export AWS_ENDPOINT_URL={account['url']}",
                  "export AWS_ACCESS_KEY_ID=AKIAEMULATEDACCOUNT0 AWS_SECRET_ACCESS_KEY=emulated-account-secret "
                  "AWS_REGION=us-east-1",
                  f"export DRILLKIT_APP_URL={box.endpoint}"]
    return Path(box.state_file), lines


def release(state_file: Path) -> None:
    """The pointer names the target now: it outlives this process (killed before, it is reaped)."""
    processes.claim(Path(state_file).parent, owned=False)


def down(state_file: str) -> str:
    """Stop the target a verified state file names (only a folder proven to be this user's target
    folder is ever touched); what was done, in one line. InputError for anything else."""
    try:
        kind, root = verified_folder(state_file)
        target = attach(state_file) if kind != "sandbox" else None
        if target is not None and Path(target.root).absolute() != root:
            raise InputError("its state names another folder; nothing was touched", file=str(state_file))
    except InputError:
        raise
    except Exception as exc:  # a state file that parses but is not one: a bad pointer, not a crash
        raise InputError(f"not a target state file ({type(exc).__name__}: {exc})", file=str(state_file)) from None
    if target is None:
        from drillkit.targets.sandbox.system import reap

        return f"sandbox down: {reap(root)} process groups stopped"
    target.down()
    return "target detached"
