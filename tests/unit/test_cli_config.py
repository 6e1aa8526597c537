"""The ``airdock`` CLI reads ``[airdock]`` options without importing Airflow when it can, and gives
the same answers as Airflow when it cannot. Each case runs in a fresh interpreter (whether Airflow
was imported is part of what is checked), all of them at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROBE = """
import json, sys
from airdock.airflow.config import cli_option, option
value = cli_option("gc_scope")
imported = "airflow" in sys.modules
print(json.dumps([value, imported, option("gc_scope")]))
"""

# (config file, environment, what the CLI reads, whether it imports Airflow to read it)
CASES: list[tuple[str | None, dict[str, str], str | None, bool]] = [
    # the environment variable wins over everything in Airflow too
    ("[airdock]\ngc_scope = airdock\n", {"AIRFLOW__AIRDOCK__GC_SCOPE": "all"}, "all", False),
    (None, {"AIRFLOW__AIRDOCK__GC_SCOPE": ""}, None, False),
    # set nowhere: None (the CLI applies the default itself); Airflow's sections and options are
    # case-sensitive, so an upper-case section sets nothing either
    (None, {}, None, False),
    ("[core]\nparallelism = 4\n[AIRDOCK]\ngc_scope = all\n[airdock]\nstate_dir = /x\n", {}, None, False),
    # in the config file or a command: Airflow reads it (and may ignore it)
    ("[airdock]\ngc_scope = all\n", {}, "all", True),
    ("[airdock]\nGC_SCOPE = all\n", {}, "airdock", True),
    ("[airdock]\ngc_scope_cmd = echo all\n", {}, "airdock", True),  # commands: sensitive options only
    (None, {"AIRFLOW__AIRDOCK__GC_SCOPE_CMD": "echo all"}, "airdock", True),
]


def _probe(home: Path, cfg: str | None, env: dict[str, str]) -> tuple[str | None, bool, str | None]:
    home.mkdir()
    if cfg is not None:
        (home / "airflow.cfg").write_text(cfg)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "AIRFLOW_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    value, imported, airflow_reads = json.loads(result.stdout.strip().splitlines()[-1])
    return value, imported, airflow_reads


def test_the_cli_reads_options_as_airflow_does_and_imports_it_only_when_it_must(tmp_path: Path) -> None:
    with ThreadPoolExecutor(len(CASES)) as pool:
        results = list(pool.map(lambda n: _probe(tmp_path / str(n), *CASES[n][:2]), range(len(CASES))))
    for (cfg, env, expected, imports), (value, imported, airflow_reads) in zip(CASES, results, strict=True):
        case = (cfg, env)
        assert imported == imports, case
        assert (value or "airdock") == (expected or "airdock") == (airflow_reads or "airdock"), case
        assert value == expected or (value is None and expected == "airdock"), case
