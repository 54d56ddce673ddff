"""Scenarios: the schema (one system spec per `system.kind`) and the loader that validates files.

    from drillkit.scenario import load_scenario
    loaded = load_scenario("scenarios/region-loss.yaml")   # InputError names file, field and line
"""

from drillkit.scenario.loader import LoadedScenario, apply_vars, check_fit, load_experiment, load_scenario, load_workload
from drillkit.scenario.schema import (
    AuditSpec,
    AwsSpec,
    ExternalSpec,
    ObjectStoreSpec,
    SandboxSpec,
    Scenario,
    SystemSpec,
)

__all__ = ["AuditSpec", "AwsSpec", "ExternalSpec", "LoadedScenario", "ObjectStoreSpec", "SandboxSpec", "Scenario", "SystemSpec",
           "apply_vars", "check_fit", "load_experiment", "load_scenario", "load_workload"]
