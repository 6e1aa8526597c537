"""What ``airdock push`` tells while it works: a ``Reporter`` the CLI renders and tests record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from airdock.analyst.push import PushProgress

__all__ = ["Reporter", "SilentReporter"]


class Reporter(Protocol):
    """What a publish tells while it works; the CLI renders it, tests record it."""

    def note(self, message: str) -> None:
        """One line worth a person's attention: a repository created, a tag skipped."""

    def build_step(self, line: str) -> None:
        """A ``Step N/M : ...`` line of the build."""

    def push_progress(self, tag: str, progress: PushProgress) -> None:
        """The upload of ``tag`` moved on (called for every daemon event; throttle when rendering)."""


class SilentReporter:
    """A ``Reporter`` that keeps the notes (for callers that render nothing)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.steps: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def build_step(self, line: str) -> None:
        self.steps.append(line)

    def push_progress(self, tag: str, progress: PushProgress) -> None:
        return None
