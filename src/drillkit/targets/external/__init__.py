"""The `external` target: a running system drillkit did not start and never stops.

The user gives its endpoint (and optionally one per region, and the response header naming the
region that answered), a workload mapping for its API (drillkit.load.workload) and an audit
adapter for its final state (drillkit.targets.external.audit). Faults and runbook steps come from
any Chaos Toolkit provider; an activity marked `"drillkit": {"fault": NAME}` is the drill's fault.
"""
