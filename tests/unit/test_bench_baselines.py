"""The benchmark's baseline scripts run against today's settings declaration (a rename of the
settings once broke `just bench` without failing any test), and every scenario is described."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from auth_service.settings import PasswordSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_argon2_baseline_runs_at_the_services_own_parameters() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.argon2_baseline", "--seconds", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    defaults = PasswordSettings()
    assert (line["memory_kib"], line["time_cost"], line["parallelism"]) == (
        defaults.memory_kib,
        defaults.time_cost,
        defaults.parallelism,
    )
    assert line["rps"] > 0


def test_every_scenario_is_described_in_the_bench_readme() -> None:
    from bench.run import SCENARIOS

    readme = (ROOT / "bench" / "README.md").read_text()
    missing = [name for name in SCENARIOS if f"| `{name}` |" not in readme]
    assert not missing, f"bench/README.md has no row for {missing}"
