"""judge: measures and targets in, typed checks and a verdict out.

    verdict.py   run_probes(folder): the shipped pytest probes on an evidence folder (junit.xml)
    plugin.py    the pytest plugin (`--drill-evidence DIR`, `--drill SCENARIO`), entry point `drillkit`
    probes/      the probes themselves, one test per target kind

The checks are computed by drillkit.measure (pure functions of the evidence); the probes hold them.
"""
