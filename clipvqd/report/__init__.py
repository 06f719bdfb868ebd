"""The HTML comparison report: seaborn figures and a jinja2 page that works from file:// offline."""

from clipvqd.report.render import ReportError, render_report

__all__ = ["ReportError", "render_report"]
