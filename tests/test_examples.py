"""Every workflow example runs and draws its figure (the layered ones: test_workflow_layers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "arguments", "figure"),
    [
        ("ev_curve.py", ["--out", "."], None),
        ("dimer_scan.py", ["--out", "."], None),
        ("rdf.py", ["--plot", "rdf.png"], "rdf.png"),
        ("neb.py", ["--plot", "neb.png"], "neb.png"),
        ("phonons.py", ["--plot", "phonons.png"], "phonons.png"),
        ("relax.py", ["--plot", "relax.png"], "relax.png"),
        ("md.py", ["--plot", "md.png", "--steps", "20"], "md.png"),
    ],
)
def test_example_runs(
    tmp_path: Path, script: str, arguments: list[str], figure: str | None
) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    pictures = [tmp_path / figure] if figure else list(tmp_path.glob("*.png"))
    assert pictures and all(p.stat().st_size > 10_000 for p in pictures)
