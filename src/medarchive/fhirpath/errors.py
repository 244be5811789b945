"""The one exception FHIRPath raises, so callers catch a single FhirError subclass.

Syntax errors carry the character offset where parsing stopped; execution errors (a function
given several items where one is required, an unknown type name, a type mismatch) carry the
expression text. Both render as an OperationOutcome with issue code ``invalid`` (HTTP 400)
because a bad expression is a client error wherever it comes from (``_filter``, a
SearchParameter, a ViewDefinition).
"""

from __future__ import annotations

from medarchive.errors import BadRequest


class FhirPathError(BadRequest):
    """A FHIRPath expression that cannot be parsed or evaluated (FHIRPath N1 §9 "Errors").

    ``stage`` is ``"syntax"`` for lexing/parsing problems, ``"semantic"`` for type errors found
    while checking names and types, and ``"execution"`` for failures while evaluating.
    """

    def __init__(self, message: str, *, position: int | None = None,
                 expression: str | None = None, stage: str = "execution") -> None:
        self.message = message
        self.position = position
        self.stage = stage
        self.source = expression
        where = f" at position {position}" if position is not None else ""
        text = f"FHIRPath {stage} error{where}: {message}"
        if expression is not None:
            text += f" (in {expression!r})"
        super().__init__(text)
