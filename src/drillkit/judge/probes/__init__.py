"""The drill probes: one test per target kind. `probes/` in the repository re-exports them."""

from pathlib import Path

PROBES_DIR = Path(__file__).parent
