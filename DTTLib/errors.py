"""Errors a user can act on.

Every error raised for bad input names the problem and the fix, so the command line and
the Slicer modules can show one clear line instead of a stack trace.
"""

from __future__ import annotations


class DTTError(Exception):
    """Base class: ``problem`` says what is wrong, ``fix`` what the user can do about it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.problem} — {self.fix}" if self.fix else self.problem


class InputError(DTTError):
    """The user's input (file, array, parameter) cannot be used as given."""


class GeometryError(InputError):
    """Image geometry is invalid (spacing, direction, dimensionality, mismatched grids)."""


class MissingDependencyError(DTTError):
    """An optional package or model the requested feature needs is not installed."""


class ResourceError(DTTError):
    """The machine cannot provide what is needed (memory, disk space, a GPU)."""
