"""judge: measures and targets in, typed checks and a verdict out.

    checks.py    judge(measures, targets, journal) -> [Check]; the check kinds; the verdict
    summary.py   summarize(folder): measure, then judge, as summary.json; write_summary
    verdict.py   run_probes(folder): the shipped pytest probes on an evidence folder (junit.xml)
    plugin.py    the pytest plugin (`--drill-evidence DIR`, `--drill SCENARIO`), entry point `drillkit`
    probes/      the probes: one test per check
"""

from .summary import Summary, summarize, write_summary

__all__ = ["Summary", "summarize", "write_summary"]
