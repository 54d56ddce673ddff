"""Makes this checkout's pytest load the drillkit plugins even where drillkit is not pip-installed."""

from importlib.metadata import entry_points

_PLUGINS = {"drillkit": "drillkit.judge.plugin", "drillkit-drill": "drillkit.run.plugin"}
_installed = {ep.name for ep in entry_points(group="pytest11")}
pytest_plugins = [module for name, module in _PLUGINS.items() if name not in _installed]
