"""The report stage: report.html and summary.md, rendered from an evidence folder alone."""

from drillkit.report.render import render_report

__all__ = ["render_report"]
