"""``airdock doctor``'s checks, each small and testable on its own; :func:`run_doctor` runs them all."""

from airdock.analyst.doctor.engine_checks import FreeSpaceThreshold
from airdock.analyst.doctor.report import CheckResult, DoctorReport
from airdock.analyst.doctor.runner import DoctorOptions, DoctorPlugin, run_doctor

__all__ = ["CheckResult", "DoctorOptions", "DoctorPlugin", "DoctorReport", "FreeSpaceThreshold", "run_doctor"]
