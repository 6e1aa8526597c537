"""The doctor's verdicts: one :class:`CheckResult` per check, a :class:`DoctorReport` of them all."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

__all__ = ["CheckResult", "DoctorReport", "failed", "one_line", "passed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. Every failed check carries a ``fix``; ``skipped`` means it could not run."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False

    def __post_init__(self) -> None:
        if not self.ok and not self.fix:
            raise ValueError(f"failed check {self.name!r} has no fix")


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def skipped(name: str, reason: str, fix: str) -> CheckResult:
    """A check that could not run because an earlier one failed: counted as failed."""
    return CheckResult(name, False, f"skipped: {reason}", fix, skipped=True)


@dataclass(frozen=True)
class DoctorReport:
    """All checks in order; ``ok`` only when every one passed."""

    checks: tuple[CheckResult, ...]
    registry: str | None = None
    image: str | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed_names(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        if self.ok:
            return f"all {len(self.checks)} checks passed"
        names = self.failed_names
        return f"{len(names)} of {len(self.checks)} checks failed: {', '.join(names)}"

    def lines(self) -> list[str]:
        """The report as text: ``✓ name: detail`` / ``✗ name: detail`` + ``    fix: ...``; the summary."""
        out: list[str] = []
        for check in self.checks:
            out.append(f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}")
            if check.fix and not check.ok:
                out.append(f"    fix: {check.fix}")
        out.append(self.summary())
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "registry": self.registry,
                "image": self.image,
                "checks": [asdict(check) for check in self.checks],
                "failed": self.failed_names,
                "summary": self.summary(),
            },
            indent=2,
        )


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """An error's text on one line, cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"
