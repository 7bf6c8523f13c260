"""The ``mlcalc`` command line and the README's commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlcalc import __version__
from mlcalc.cli import main
from mlcalc.models import NEMP, NEMPConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = NEMP(NEMPConfig.preset("small", elements=["O", "H"], cutoff=4.5))
    model.set_energy_reference({"H": -13.6, "O": -2040.0}, energy_scale=0.5)
    path = tmp_path / "model.safetensors"
    model.save(path)
    return path


def test_info_prints_the_checkpoint(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "nemp"
    assert info["elements"] == ["H", "O"]
    assert info["cutoff"] == 4.5
    assert info["atomic_energies"] == {"H": -13.6, "O": -2040.0}
    assert info["config"]["channels"] == 8
    assert main(["info", str(checkpoint)]) == 0
    assert "elements" in capsys.readouterr().out


def test_info_on_a_bad_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["info", str(bad)]) == 2
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlcalc.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"mlcalc {__version__}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) == 2, "the quick start has exactly two commands"
    marker = readme.split("<!-- ci:test-command -->", 1)[1]
    assert marker.lstrip().startswith("```bash\n" + blocks[1] + "\n```")
    assert "pytest" in blocks[1] and "torch==2.13.0" in blocks[0] + blocks[1]
    assert "ci:test-command" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_water_md_example_is_liquid_water_at_300_kelvin(tmp_path: Path) -> None:
    """The README's main job as a user runs it: every reported temperature is 300 ± 30 K."""
    trajectory = tmp_path / "water.traj"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "water_md.py"),
            "--trajectory",
            str(trajectory),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    temperatures = [float(t) for t in re.findall(r" T +([0-9.]+) K", result.stdout)]
    assert len(temperatures) == 10, result.stdout
    assert all(270.0 <= t <= 330.0 for t in temperatures), result.stdout
    assert trajectory.stat().st_size > 0


def test_workflow_model_may_be_a_registry_name(tmp_path: Path, capsys) -> None:
    from ase.build import bulk

    structure = tmp_path / "si.xyz"
    bulk("Si", "diamond", a=5.43).write(structure)
    out = tmp_path / "relax"
    assert main(["relax", str(structure), "--model", "si", "--out", str(out)]) == 0
    assert (out / "relax.traj").is_file()
    assert main(["relax", str(structure), "--model", "sii", "--out", str(out)]) != 0
    assert "did you mean 'si'" in capsys.readouterr().err
