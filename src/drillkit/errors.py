"""The one exception tree of drillkit. Only cli.py turns these into exit codes."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line, whatever the message holds (psycopg's run over two)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DrillkitError(Exception):
    """Base of every error drillkit raises on purpose."""


class InputError(DrillkitError):
    """The user's input is wrong (scenario, experiment, flag). Exit 2; nothing was started."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.message = message
        self.file = file
        self.field = field
        where = ": ".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)

    def in_file(self, file: str) -> "InputError":
        """The same error, naming `file` when it names none yet (a scenario field checked later)."""
        return self if self.file else type(self)(self.message, file=file, field=self.field)


class EnvironmentProblem(InputError):
    """The machine cannot host a drill (no PostgreSQL binaries, no free port, unwritable folder)."""


class ServiceError(DrillkitError):
    """A process drillkit runs (a sandbox service, Locust, the emulated account) failed to start,
    answer or stop."""


class SandboxError(ServiceError):
    """One of the sandbox's own services or clusters failed to start, answer or stop."""


class FaultError(DrillkitError):
    """A fault or recovery action could not be carried out."""


class EvidenceError(DrillkitError):
    """An evidence folder is missing, incomplete or malformed."""


class DrillAborted(DrillkitError):
    """The drill was stopped before its end: a signal, a safeguard or a harness error."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class MissingCapability(FaultError):
    """A chaos action asked the target for a capability it does not have."""

    def __init__(self, capability: str, kind: str):
        self.capability = capability
        self.kind = kind
        super().__init__(f"the {kind} target lacks the {capability} capability this action needs")
