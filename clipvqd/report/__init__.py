"""The HTML comparison report: seaborn figures and a jinja2 page that works from file:// offline."""

from clipvqd.report.build import build_report
from clipvqd.report.inputs import flatten_numbers
from clipvqd.report.render import ReportError, render_report

__all__ = ["ReportError", "build_report", "flatten_numbers", "render_report"]
