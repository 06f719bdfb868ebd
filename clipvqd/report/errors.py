"""The report's one error type: a short message naming the input at fault."""


class ReportError(ValueError):
    pass
