"""Secrets stay out of evidence: evidence folders are archived and handed to auditors.

Three passes. Structurally, every value under a key that names a secret (`password`, `token`,
`api_key`, an experiment's `secrets` block, a configuration key marked `"secret": true`) becomes
`***`. Then every known secret value (those values, plus credential-like environment variables
such as AWS_SECRET_ACCESS_KEY) is replaced wherever it appears as a substring. Last, secrets
recognised by their shape whatever key holds them (redact_shapes: a DSN's password under
`db_dsn`, an Authorization header in a log, an AWS secret key): the same function cleans every
message the command line prints.

The client records (requests/, final_state.jsonl, lag.csv) are left alone: they hold keys,
checksums and timings only, and a substring replaced inside a checksum would falsify the audit.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from drillkit import evidence as ev
from drillkit.errors import InputError
from drillkit.yamlfile import load_yaml, parse_yaml

REDACTED = "***"

MIN_SECRET_LEN = 6
"""Shorter values are redacted only where a key names them: replacing every `true` or `1234`
in the evidence would destroy it and hide nothing."""

CREDENTIAL_ENV = re.compile(
    r"^(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|AWS_SESSION_TOKEN|DRILLKIT_SIGNING_KEY|PGPASSWORD)$"
    r"|_(PASSWORD|PASSWD|TOKEN|SECRET|SECRET_KEY|API_KEY|PRIVATE_KEY|ACCESS_KEY)$")

SECRET_KEY = re.compile(
    r"(^|_)(passwords?|passwd|passphrase|secrets?|tokens?|api_?keys?|access_?keys?(_id)?|secret_?keys?"
    r"|private_?keys?|credentials?|authorization)($|_)")

_URL_PASSWORD = re.compile(r"(//[^\s:/?#@\[\]\"'<>]*:)([^\s@/\"'<>]+)(?=@)")
"""`scheme://user:PASSWORD@host`, also mistyped (`postgres//user:PASSWORD@host`, which psycopg
quotes back in its error)."""
_KV_PASSWORD = re.compile(r"(?i)(\b(?:password|passwd)\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'\"&;,]+)")
"""`password=PASSWORD` in a key/value DSN (`host=db user=drill password=...`) or a query string."""
_AUTHORIZATION = re.compile(
    r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|aws4-hmac-sha256)\s+)?)"
    r"([^\s\"',;]+)")
"""An `Authorization:` header's credentials, whatever the scheme."""
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+._~-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_-]|[.~][A-Za-z0-9])")
"""An AWS secret access key's shape: 40 characters of base64 standing alone, not a piece of a
longer name (`/srv/reports/20261207T042202.650374Z-region-loss` holds a 40-character run that
continues with `.6`). Hex digests of 40 (a git commit, a SHA-1) are not secrets and are kept: a
candidate must mix cases or hold `/` or `+`. Nor is an absolute path whose first folder exists."""


def _aws_secret(match: re.Match) -> str:
    s = match.group(0)
    mixed = (any(c.isupper() for c in s) and any(c.islower() for c in s)) or "/" in s or "+" in s
    return REDACTED if mixed and any(c.isdigit() or c in "/+" for c in s) and not _is_path(s) else s


def _is_path(s: str) -> bool:
    """`/check/work/main/reports/20261207T04220` is a path: it starts with `/` and its first folder
    is there. A random key starts `/<existing folder>/` with odds far below one in a million."""
    head = s[1:].split("/", 1)
    return s.startswith("/") and len(head) == 2 and head[0] != "" and os.path.isdir("/" + head[0])


def redact_shapes(text: str) -> str:
    """`text` with every secret recognised by its shape alone replaced by `***`: URL user-info
    passwords, `password=` in DSNs, Authorization header values, AWS secret access keys."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    return _AWS_SECRET.sub(_aws_secret, text)


def shaped_secrets(text: str) -> set[str]:
    """The values redact_shapes would hide in `text`, so that the text pass also finds them where
    they stand alone (a password logged on its own)."""
    found = {m.group(2) for rx in (_URL_PASSWORD, _KV_PASSWORD, _AUTHORIZATION) for m in rx.finditer(text)}
    found |= {m.group(0) for m in _AWS_SECRET.finditer(text) if _aws_secret(m) == REDACTED}
    return {v.strip("'") for v in found if len(v.strip("'")) >= MIN_SECRET_LEN and v != REDACTED}


REDACTED_FILES = (ev.JOURNAL, ev.SCENARIO, ev.PROVENANCE, ev.EVENTS, ev.CHAOS_LOG, ev.HARNESS_ERROR, ev.AWS_CALLS)
"""The files a drill writes before it is measured; *.log and *.txt anywhere in the folder too."""

UNTOUCHED = (ev.REQUESTS_DIR, ev.FINAL_STATE, ev.LAG)


def is_secret_key(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).replace("-", "_").replace(".", "_").lower()
    return bool(SECRET_KEY.search(snake))


def is_credential_env(name: str) -> bool:
    return bool(CREDENTIAL_ENV.search(name.upper()))


def _is_env_reference(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "env" and isinstance(value.get("key"), str)


def _marked_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get("secret") is True


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _resolved(value: Any, environ: Mapping[str, str]) -> list[Any]:
    """The concrete values a configuration or secret entry stands for: literal, or env and its default."""
    if _is_env_reference(value):
        out = [environ.get(value["key"])]
        return out + ([value["default"]] if "default" in value else [])
    if isinstance(value, dict) and value.get("type") == "vault":
        return []
    return list(_leaves(value))


def secret_keys(experiment: Mapping[str, Any] | None) -> set[str]:
    """Configuration keys of `experiment` that hold secrets, by marker or by name."""
    config = (experiment or {}).get("configuration")
    if not isinstance(config, dict):
        return set()
    return {k for k, v in config.items() if _marked_secret(v) or is_secret_key(k)}


def secret_values(experiments: Iterable[Mapping[str, Any] | None], environ: Mapping[str, str] | None = None,
                  variables: Mapping[str, Any] | None = None) -> set[str]:
    """Every value that must not appear in evidence, as strings."""
    environ = os.environ if environ is None else environ
    found: list[Any] = [v for k, v in environ.items() if is_credential_env(k)]
    experiments = [e for e in experiments if isinstance(e, Mapping)]
    keys = set().union(*(secret_keys(e) for e in experiments)) if experiments else set()
    for experiment in experiments:
        config = experiment.get("configuration")
        if isinstance(config, dict):
            for key in keys & set(config):
                found += _resolved(config[key], environ)
        secrets = experiment.get("secrets")
        if isinstance(secrets, dict):
            for scope in secrets.values():
                entries = scope.values() if isinstance(scope, dict) else [scope]
                for entry in entries:
                    found += _resolved(entry, environ)
    for key, value in (variables or {}).items():
        if key in keys or is_secret_key(key):
            found.append(value)
    return {str(v) for v in found if v is not None and not isinstance(v, bool) and str(v).strip()}


class Redactor:
    """Redacts structures and text against one set of secret values."""

    def __init__(self, values: Iterable[str], secret_config_keys: Iterable[str] = (),
                 environ: Mapping[str, str] | None = None):
        self.values = set(values)
        self.config_keys = set(secret_config_keys)
        self.environ = os.environ if environ is None else environ
        self._pattern: re.Pattern[str] | None = None
        self._refresh()

    def _refresh(self) -> None:
        long_enough = sorted((v for v in self.values if len(v) >= MIN_SECRET_LEN), key=len, reverse=True)
        forms = {f for v in long_enough for f in (v, json.dumps(v)[1:-1])}
        self._pattern = re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True)))) if forms else None

    def learn(self, values: Iterable[str]) -> None:
        new = {v for v in values if v not in self.values}
        if new:
            self.values |= new
            self._refresh()

    def text(self, text: str) -> str:
        return redact_shapes(self._pattern.sub(REDACTED, text) if self._pattern else text)

    def data(self, value: Any, secret: bool = False, parent_key: Any = None) -> Any:
        """A copy of `value` with secret-keyed values and known secret substrings replaced."""
        if isinstance(value, dict):
            inside = secret or _marked_secret(value)
            if _is_env_reference(value):
                return {k: (REDACTED if k == "default" and inside and v is not None else self.data(v, False, k))
                        for k, v in value.items()}
            return {self._key(k): self.data(v, inside or self._secret_entry(k, parent_key), k)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v, secret, parent_key) for v in value]
        if isinstance(value, bool) or value is None:
            return value
        if secret:
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (int, float)) and len(str(value)) >= MIN_SECRET_LEN and str(value) in self.values:
            return REDACTED
        return value

    def _secret_entry(self, key: Any, parent_key: Any) -> bool:
        return is_secret_key(key) or (parent_key in ("configuration", "vars") and key in self.config_keys)

    def _key(self, key: Any) -> Any:
        return self.text(key) if isinstance(key, str) else key

    def harvest(self, value: Any, secret: bool = False, parent_key: Any = None) -> set[str]:
        """Values that sit under secret keys in `value`, so the text pass finds them elsewhere too."""
        found: set[str] = set()
        if isinstance(value, dict):
            inside = secret or _marked_secret(value)
            if _is_env_reference(value):
                if inside:
                    found |= {str(v) for v in _resolved(value, self.environ) if v is not None and str(v).strip()}
                return found
            for k, v in value.items():
                found |= self.harvest(v, inside or self._secret_entry(k, parent_key), k)
        elif isinstance(value, list):
            for v in value:
                found |= self.harvest(v, secret, parent_key)
        elif secret and value is not None and not isinstance(value, bool) and str(value).strip():
            found.add(str(value))
        return found


def _original_experiment(scenario: Any) -> dict[str, Any] | None:
    """The experiment file as written, before --var replaced a key marked secret by a literal."""
    try:
        return json.loads(Path(scenario["experiment"]).read_text(encoding="utf-8"))
    except Exception:  # scenario.yaml or the experiment may be gone; the passed experiment still counts
        return None


def _targets(folder: Path) -> list[Path]:
    found = {folder / name for name in REDACTED_FILES if (folder / name).is_file()}
    for pattern in ("*.log", "*.txt"):
        found |= {p for p in folder.rglob(pattern) if p.is_file()}
    return sorted(p for p in found if p.relative_to(folder).parts[0] not in UNTOUCHED)


def _load_structured(path: Path) -> tuple[str, Any] | None:
    """The text of a JSON or YAML file and its data; None when it does not parse."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    try:
        if path.suffix == ".json":
            return text, json.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return text, parse_yaml(text, str(path))
    except (ValueError, InputError):
        return None
    return None


def _rewrite(path: Path, redactor: Redactor, loaded: tuple[str, Any] | None) -> bool:
    """`loaded` is the file's text and data when it is structured and parsed (read once, by the caller)."""
    if loaded is not None:
        text, data = loaded
        clean = redactor.data(data)
        if clean == data:
            return False
        if path.suffix == ".json":
            new = json.dumps(clean, indent=2, default=str) + ("\n" if text.endswith("\n") else "")
        else:
            new = yaml.safe_dump(clean, sort_keys=False, allow_unicode=True)
        path.write_text(new, encoding="utf-8")
        return True
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if path.suffix == ".jsonl":
        lines = text.splitlines(keepends=True)
        out = []
        for line in lines:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    out.append(redactor.text(line))
                    continue
                ending = "\n" if line.endswith("\n") else ""
                clean = redactor.data(record)
                out.append(line if clean == record else json.dumps(clean, default=str) + ending)
            else:
                out.append(line)
        new = "".join(out)
    else:
        new = redactor.text(text)
    if new == text:
        return False
    path.write_bytes(new.encode("utf-8", errors="surrogateescape"))
    return True


def redact_evidence(folder: str | os.PathLike[str], experiment: Mapping[str, Any] | None,
                    environ: Mapping[str, str] | None = None) -> list[str]:
    """Rewrite the evidence files in place without secrets; the names of the files changed.

    Call after teardown (every file the drill writes exists) and before measure, so that
    summary.json and report.html are made from redacted inputs.
    """
    folder = Path(folder)
    try:
        scenario = load_yaml(folder / ev.SCENARIO, "scenario")
    except InputError:
        scenario = None
    experiments = [experiment, _original_experiment(scenario)]
    variables = scenario.get("vars") if isinstance(scenario, dict) else None
    keys = set().union(*(secret_keys(e) for e in experiments if isinstance(e, Mapping)))
    redactor = Redactor(secret_values(experiments, environ, variables if isinstance(variables, dict) else None),
                        keys, environ)
    targets = _targets(folder)
    loaded = {p: _load_structured(p) for p in targets if p.suffix in (".json", ".yaml", ".yml")}
    for item in loaded.values():
        if item is not None:
            redactor.learn(redactor.harvest(item[1]))
    for path in targets:
        redactor.learn(shaped_secrets(path.read_bytes().decode("utf-8", errors="replace")))
    return [str(p.relative_to(folder)) for p in targets if _rewrite(p, redactor, loaded.get(p))]
