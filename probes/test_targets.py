"""The drill probes shipped with drillkit (src/drillkit/judge/probes), collected from this checkout.

Run: `pytest probes/ --drill-evidence reports/<drill>` or `pytest probes/ --drill scenarios/region-loss.yaml`.
"""

from drillkit.judge.probes.test_targets import *  # noqa: F401,F403
