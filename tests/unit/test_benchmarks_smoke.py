"""The benchmark harness runs end to end at a tiny scale, so the benchmarks cannot rot (no Docker)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import benchmarks
import pytest
from benchmarks import Figure
from benchmarks import __main__ as harness
from rich.console import Console


def test_gc_plan_runs_at_tiny_scale_and_writes_flat_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "docker_version", lambda: None)
    out = tmp_path / "results" / "latest.json"
    screen = io.StringIO()
    console = Console(file=screen, width=200)

    code = harness.main(["--scale", "0.01", "--repeat", "2", "--only", "gc_plan", "--out", str(out)], console)

    assert code == 0
    printed = screen.getvalue()
    assert "gc_plan_10k_s" in printed
    assert "gc_plan_10k_images_per_s" in printed
    assert "median [min–max]" in printed
    assert "target < 1 s" in printed
    results = json.loads(out.read_text())
    assert all(isinstance(v, int | float | str) or v is None for v in results.values())  # flat
    assert 0 < results["gc_plan_10k_s_min"] <= results["gc_plan_10k_s"] <= results["gc_plan_10k_s_max"]
    assert results["gc_plan_10k_images_per_s"] > 0
    assert results["gc_plan_10k_s_baseline"] is None
    assert results["scale"] == 0.01
    assert results["repeat"] == 2
    assert results["cpu_count"] >= 1
    assert results["python_version"].count(".") == 2
    assert results["docker_version"] is None


def test_gc_plan_is_discovered() -> None:
    assert "gc_plan" in benchmarks.discover()


def test_unknown_benchmark_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        harness.main(["--only", "nope", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_figure_statistics() -> None:
    fig = Figure.of("x_s", (3.0, 1.0, 2.0), "s", baseline=4.0)
    assert (fig.airdock, fig.low, fig.high, fig.ratio) == (2.0, 1.0, 3.0, 0.5)
    assert Figure.of("y_s", (1.0,), "s").ratio is None
