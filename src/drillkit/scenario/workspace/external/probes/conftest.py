"""pytest probes for this workspace: drillkit's own (test_drill.py re-exports them), plus yours.

Run: pytest probes --drill-evidence reports/<drill>
drillkit's pytest plugin (installed with drillkit) gives the fixtures drill_evidence,
drill_summary and drill_check; add fixtures of your own here.
"""
