"""The benchmark harness and every benchmark run end to end at a tiny scale, so they cannot rot.

The planner's benchmark needs nothing; the others need the Docker engine and the registry binary
(marked ``integration``: `make test` provides both, `make test-unit` skips them).
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

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


# -- the benchmarks that need the Docker engine and the local stack (run under `make test`) ----------

ENGINE_BENCHMARKS = {
    "task_start": ("task_start_ms", "task_start_stock_ms", "task_start_raw_docker_ms"),
    "auth": ("auth_cached_ms", "auth_cold_ms"),
    "fanout": ("fanout_20_token_calls", "fanout_20_wall_s"),
    "pull": ("pull_mb_per_s",),
    "gc_apply": ("gc_apply_s",),
    "logs": (
        "log_lines_per_s",
        "log_lines_per_s_vs_engine",
        "log_engine_lines_per_s",
        "log_peak_rss_mb",
        "log_lines_per_s_100k",
        "log_peak_rss_mb_100k",
    ),
    "ecs_local": ("ecs_local_run_s", "ecs_local_raw_docker_s", "ecs_local_log_lines_per_s"),
    "ecs_task": ("ecs_task_start_s", "ecs_task_start_stock_s", "ecs_register_calls_20"),
}
# What the benchmarks name their images and temporary directories: none may outlive a run.
LEFTOVER_MARKERS = (
    "/bench/task-start",
    "/bench/pull",
    "airdock-bench-gc-",
    "/bench/logs",
    "/bench/ecs-local",
    "/bench/ecs-task",
)


def _engine_or_skip() -> Any:
    """The engine `make test` provides; `make test-unit` (no engine) skips these cases."""
    import docker

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine ({exc.__class__.__name__}); `make test` runs this with one")
    return client


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(ENGINE_BENCHMARKS))
def test_engine_benchmark_runs_at_tiny_scale_and_leaves_nothing_behind(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _engine_or_skip()
    monkeypatch.setattr(harness, "docker_version", lambda: None)
    scratch = tmp_path / "tmp"  # every temporary directory of the run, its child processes' included
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "latest.json"
    screen = io.StringIO()

    argv = ["--scale", "0.01", "--repeat", "1", "--only", name, "--out", str(out)]
    code = harness.main(argv, Console(file=screen, width=250))

    assert code == 0
    results = json.loads(out.read_text())
    for figure in ENGINE_BENCHMARKS[name]:
        assert figure in screen.getvalue()
        assert 0 < results[f"{figure}_min"] <= results[figure] <= results[f"{figure}_max"]
    compared = {"task_start": "task_start_ms", "auth": "auth_cold_ms", "pull": "pull_mb_per_s"}
    compared.update(gc_apply="gc_apply_s", fanout="fanout_20_wall_s", logs="log_lines_per_s_vs_engine")
    compared.update(ecs_local="ecs_local_run_s", ecs_task="ecs_task_start_s")
    assert results[f"{compared[name]}_baseline"] > 0
    if name == "fanout":  # 2 processes at this scale: one token call with airdock, one each without
        assert (results["fanout_20_token_calls"], results["fanout_20_token_calls_baseline"]) == (1, 2)
    if name == "ecs_local":  # may be 0 at this scale, so not among the positive figures above
        assert 0 <= results["ecs_local_log_rss_growth_mb"] < 50
    if name == "ecs_task":  # 2 processes at this scale: one registration with airdock, one each without
        assert (results["ecs_register_calls_20"], results["ecs_register_calls_20_baseline"]) == (1, 2)
    tags = [tag for image in client.api.images() for tag in image.get("RepoTags") or ()]
    assert not [tag for tag in tags if any(marker in tag for marker in LEFTOVER_MARKERS)]
    containers = [c["Image"] for c in client.api.containers(all=True)]
    assert not [image for image in containers if any(marker in image for marker in LEFTOVER_MARKERS)]
    assert not list(scratch.iterdir()), "a temporary directory (stack, cache, home) was left behind"
