"""Makes this checkout's pytest load the drillkit plugin even where drillkit is not pip-installed."""

from importlib.metadata import entry_points

if not any(ep.name == "drillkit" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["drillkit.judge.plugin"]
