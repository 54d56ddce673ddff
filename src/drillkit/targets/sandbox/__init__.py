"""The embedded two-region system under test: real PostgreSQL, real HTTP, fault-injecting links.

`drillkit.targets.sandbox.system.Sandbox` is the entry point; the other modules are its parts and the
processes it starts (`python -m drillkit.targets.sandbox.app|router|linkproxy`).
"""
