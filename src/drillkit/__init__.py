"""drillkit: disaster-recovery drills that count lost writes and time recovery."""

__version__ = "0.1.0"
