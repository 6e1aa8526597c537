"""Run the benchmarks, print a table, write ``benchmarks/results/latest.json``.

    python -m benchmarks [--scale 1.0] [--repeat 5] [--only NAME]... [--out PATH]

``latest.json`` is one flat object: for each figure its median under its name, ``<name>_min``,
``<name>_max`` and ``<name>_baseline`` (null without one); then the run's facts (scale, repeat)
and the machine's (CPU count, Python version, Docker server version or null).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks import Figure, discover

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def docker_version() -> str | None:
    """The Docker server version when ``docker`` answers, else None."""
    if shutil.which("docker") is None:
        return None
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = done.stdout.strip()
    return version if done.returncode == 0 and version else None


def number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(figures: Sequence[Figure], title: str) -> Table:
    grid = Table(title=title)
    grid.add_column("figure", no_wrap=True)
    grid.add_column(escape("airdock (median [min–max])"), justify="right", no_wrap=True)
    grid.add_column("baseline", justify="right")
    grid.add_column("ratio", justify="right")
    grid.add_column("note")
    for fig in figures:
        spread = f"{number(fig.airdock)} {fig.unit} [{number(fig.low)}–{number(fig.high)}]"
        baseline = "—" if fig.baseline is None else f"{number(fig.baseline)} {fig.unit}"
        ratio = "—" if fig.ratio is None else f"{fig.ratio:.2f}×"
        grid.add_row(*(escape(cell) for cell in (fig.name, spread, baseline, ratio, fig.note)))
    return grid


def results(figures: Sequence[Figure], scale: float, repeat: int) -> dict[str, float | int | str | None]:
    out: dict[str, float | int | str | None] = {}
    for fig in figures:
        out[fig.name] = fig.airdock
        out[f"{fig.name}_min"] = fig.low
        out[f"{fig.name}_max"] = fig.high
        out[f"{fig.name}_baseline"] = fig.baseline
    out.update(
        scale=scale,
        repeat=repeat,
        cpu_count=os.cpu_count(),
        python_version=platform.python_version(),
        docker_version=docker_version(),
        platform=platform.platform(),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return out


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    modules = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="workload size relative to the figures' names"
    )
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure (median, min, max)")
    parser.add_argument(
        "--only", action="append", choices=sorted(modules), metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(sorted(modules))}",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.repeat < 1:
        parser.error("--scale must be > 0 and --repeat ≥ 1")

    console = console or Console(width=None if sys.stdout.isatty() else 150)  # logs: no wrapping
    figures: list[Figure] = []
    for name in args.only or sorted(modules):
        with console.status(f"benchmark {name}…"):
            figures.extend(modules[name].run(args.scale, args.repeat))
    console.print(table(figures, f"airdock benchmarks (scale {args.scale:g}, {args.repeat} repeats)"))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results(figures, args.scale, args.repeat), indent=2) + "\n")
    console.print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
