"""bench/mace_baseline.py logic that needs no MACE venv: arguments, durations, what is copied
from our configs, the mace_run_train command, E0s and the test metrics on fake arrays (checked
against mlcalc's own ErrorSums). Nothing here trains or runs MACE."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from helpers import BENCH, load_bench

mb = load_bench("mace_baseline")


@dataclass
class Label:
    n: int
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    atoms: Any = None

    def __len__(self) -> int:
        return self.n


def test_arguments_defaults_and_passthrough() -> None:
    args = mb.parse_args(["ethanol"])
    assert args.budget_s is None and args.threads is None
    assert args.out == Path("runs/mace-ethanol")
    assert args.config == mb.ROOT / "examples/configs/ethanol-nemp.yaml"
    assert args.extra == []
    args = mb.parse_args(
        ["si", "--max-time", "12m", "--threads", "2", "--out", "x", "--", "--lr=0.005"]
    )
    assert args.budget_s == 720.0 and args.threads == 2 and args.out == Path("x")
    assert args.extra == ["--lr=0.005"]


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["3bpa", "--max-time", "soon"],
        ["3bpa", "--max-time", "0s"],
        ["3bpa", "--threads", "0"],
    ],
)
def test_bad_arguments_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        mb.parse_args(argv)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("12m", 720.0), ("1h30m", 5400.0), ("2.5m", 150.0), ("45", 45.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert mb.parse_duration(text) == seconds


@pytest.mark.parametrize("dataset", mb.DATASETS)
def test_specs_copy_our_configs(dataset: str) -> None:
    spec = mb.load_spec(mb.parse_args([dataset]).config)
    assert spec["valid_fraction"] == 0.1 and spec["seed"] == 0 and spec["dtype"] == "float32"
    assert spec["threads"] == 1 and spec["max_time"] is not None
    # None: sized from the training frames by prepare(), as mlcalc train sizes its own
    assert spec["batch_size"] is None
    if dataset in ("water", "si"):
        assert spec["e0s"] == "fit"
    else:
        assert isinstance(spec["e0s"], Path) and spec["e0s"].name.startswith("iso")
    assert spec["train_file"].is_absolute() and spec["test_file"].is_absolute()


def test_e0s_argument() -> None:
    assert mb.e0s_argument("fit") == "average"
    isolated = [
        Label(n, energy, atoms=SimpleNamespace(numbers=np.array([z] * n)))
        for n, z, energy in [(1, 1, -13.5), (1, 6, -1029.0), (1, 8, -2040.0), (2, 1, -1.0)]
    ]
    text = mb.e0s_argument(Path("iso.xyz"), isolated, [1, 8])  # C is in the file, not the data
    assert text == "{1: -13.5, 8: -2040.0}"
    assert mb.e0s_argument({"H": -1.0, "O": -2.0}, elements=[8, 1]) == "{1: -1.0, 8: -2.0}"
    with pytest.raises(ValueError, match="atomic numbers \\[7\\]"):
        mb.e0s_argument(Path("iso.xyz"), isolated, [1, 7])
    with pytest.raises(ValueError, match="no MACE equivalent"):
        mb.e0s_argument("keep")


def test_mace_command() -> None:
    spec = {"batch_size": 5, "epochs": 1000, "dtype": "float32", "seed": 0, "ema_decay": 0.99}
    command = mb.mace_command(spec, Path("/o/data"), Path("/o"), "average", False, ["--lr=0.1"])
    for item in [
        "--train_file=/o/data/train.extxyz",
        "--valid_file=/o/data/valid.extxyz",
        "--E0s=average",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--num_channels=64",
        "--max_L=1",
        "--r_max=5.0",
        "--num_interactions=2",
        "--correlation=3",
        "--batch_size=5",
        "--default_dtype=float32",
        "--seed=0",
        "--ema",
        "--ema_decay=0.99",
        "--work_dir=/o",
    ]:
        assert item in command
    assert command[-1] == "--lr=0.1"
    assert not any("stress" in item for item in command if not item.startswith("--stress_key"))
    stressed = mb.mace_command(spec, Path("/o/data"), Path("/o"), "average", True)
    assert "--loss=stress" in stressed and "--compute_stress=True" in stressed


def fake_set() -> tuple[list[Label], np.ndarray, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    eye = np.eye(3)
    labels = [
        Label(2, -10.0, np.zeros((2, 3)), None),  # energy, forces
        Label(3, None, np.ones((3, 3)), 0.01 * eye),  # no energy
        Label(1, -4.0, None, 0.02 * eye),  # no forces
    ]
    energy = np.array([-9.9, 123.0, -4.3])
    forces = [rng.normal(size=(n, 3)) for n in (2, 3, 1)]
    stress = np.stack([eye, 0.015 * eye, 0.02 * eye + 0.001])
    return labels, energy, forces, stress


def test_metric_definitions_by_hand() -> None:
    labels, energy, forces, stress = fake_set()
    result = mb.score(labels, energy, forces, stress)
    assert result["n_structures"] == 3 and result["n_atoms"] == 6
    energy_residuals = np.array([0.1 / 2, -0.3 / 1])  # per atom, structures with energy
    assert math.isclose(result["energy_mae"], 1000 * np.abs(energy_residuals).mean())
    assert math.isclose(result["energy_rmse"], 1000 * np.sqrt(np.mean(energy_residuals**2)))
    force_residuals = np.concatenate([forces[0].ravel(), (forces[1] - 1).ravel()])  # 15 values
    assert math.isclose(result["forces_mae"], 1000 * np.abs(force_residuals).mean())
    assert math.isclose(result["forces_rmse"], 1000 * np.sqrt(np.mean(force_residuals**2)))
    stress_residuals = np.concatenate([(0.005 * np.eye(3)).ravel(), np.full(9, 0.001)])
    assert math.isclose(result["stress_mae"], 1000 * np.abs(stress_residuals).mean())
    assert math.isclose(result["stress_rmse"], 1000 * np.sqrt(np.mean(stress_residuals**2)))
    no_stress = mb.score(labels, energy, forces, None)
    assert "stress_mae" not in no_stress and no_stress["forces_mae"] == result["forces_mae"]
    json.dumps(result)  # plain floats and ints
    with pytest.raises(ValueError, match="predicted"):
        mb.score(labels, energy[:2], forces, stress)


def test_metrics_match_mlcalc_error_sums() -> None:
    """The same numbers as mlcalc's ErrorSums (``mlcalc eval --json``) on a real batch."""
    import torch
    from ase import Atoms
    from ase.build import bulk

    from mlcalc.training.data import LabeledStructure
    from mlcalc.training.graphs import GraphDataset
    from mlcalc.training.metrics import ErrorSums

    labels, energy, forces, stress = fake_set()
    water = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    atoms = [water[:2], water, bulk("Si", "diamond", 5.43)[:1]]
    atoms[2].pbc = True
    labelled = [
        LabeledStructure(a, lab.energy, lab.forces, lab.stress, f"fake {k}")
        for k, (a, lab) in enumerate(zip(atoms, labels, strict=True))
    ]
    dataset = GraphDataset(labelled, 3.0, ["H", "O", "Si"], torch.float64)
    outputs = {
        "energy": torch.tensor(energy),
        "forces": torch.tensor(np.concatenate(forces)),
        "stress": torch.tensor(stress),
    }
    sums = ErrorSums()
    sums.add(outputs, dataset.batch([0, 1, 2]))
    expected = sums.errors()
    got = mb.score(labelled, energy, forces, stress)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9), key


def test_split_forces_and_format() -> None:
    parts = mb.split_forces(np.arange(18.0).reshape(6, 3), [2, 3, 1])
    assert [p.shape for p in parts] == [(2, 3), (3, 3), (1, 3)]
    with pytest.raises(ValueError):
        mb.split_forces(np.zeros((5, 3)), [2, 3, 1])
    labels, energy, forces, stress = fake_set()
    text = mb.format_metrics(mb.score(labels, energy, forces, stress))
    assert "3 structures, 6 atoms" in text and "meV/Å³" in text


def test_output_folder_guard(tmp_path: Path) -> None:
    out = tmp_path / "run"
    mb.prepare_out(out, overwrite=False)  # new
    (out / "something").write_text("x")
    with pytest.raises(SystemExit, match="not empty"):
        mb.prepare_out(out, overwrite=False)
    with pytest.raises(SystemExit, match=r"has no mace_baseline\.json"):
        mb.prepare_out(out, overwrite=True)
    (out / mb.MARKER).write_text("{}")
    with pytest.raises(SystemExit, match=r"has no sevenn_baseline\.json"):
        mb.prepare_out(out, True, "sevenn_baseline.json")  # a MACE run: not SevenNet's to clear
    mb.prepare_out(out, overwrite=True)
    assert out.is_dir() and not any(out.iterdir())


def test_worker_stop_is_not_an_exception() -> None:
    """MACE wraps plotting and logging in ``except Exception``: the budget stop must get past."""
    spec = importlib.util.spec_from_file_location("bench_mace_worker", BENCH / "mace_worker.py")
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)  # standard library only at import
    assert not issubclass(worker.BudgetReached, Exception)
    assert issubclass(worker.BudgetReached, BaseException)


def test_labelled_copy_round_trip(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.io import read

    labels, *_ = fake_set()
    for lab in labels:
        positions = np.arange(3 * lab.n, dtype=float).reshape(-1, 3)
        lab.atoms = Atoms("H" * lab.n, positions=positions, cell=np.eye(3) * 10, pbc=True)
    path = tmp_path / "x.extxyz"
    mb.write_labelled(labels, path)
    back = read(path, ":")
    assert back[0].info["REF_energy"] == -10.0 and "REF_energy" not in back[1].info
    assert np.allclose(back[1].arrays["REF_forces"], 1.0) and "REF_forces" not in back[2].arrays
    assert np.allclose(np.reshape(back[2].info["REF_stress"], (3, 3)), 0.02 * np.eye(3))
    assert back[0].calc is None  # no `energy`/`forces` results for MACE to pick up instead


def test_run_logged_tees_and_kills(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import sys

    log = tmp_path / "log.txt"
    env = dict(os.environ)
    assert mb.run_logged([sys.executable, "-c", "print('hello')"], env, log, 60.0) == 0
    assert "hello" in capsys.readouterr().out and "hello" in log.read_text()
    code = "import time; print('sleeping', flush=True); time.sleep(60)"
    assert mb.run_logged([sys.executable, "-c", code], env, log, 0.5) != 0  # killed
    assert "sleeping" in log.read_text()


def test_prepare_sizes_the_batch_as_mlcalc_train_does(tmp_path: Path) -> None:
    from ase.io import write
    from test_training import emt_frames  # 8-atom Cu/Al cells with EMT labels

    write(tmp_path / "train.xyz", emt_frames(10))
    data_file = tmp_path / "train.xyz"
    spec = {"train_file": data_file, "valid_file": None, "valid_fraction": 0.2, "seed": 0,
            "test_file": data_file, "e0s": "fit", "batch_size": None}  # fmt: skip
    data = mb.prepare(spec, tmp_path / "data")
    assert data["batch_size"] == 6 and data["train"] == 8 and data["valid"] == 2  # 45 / 8 atoms
    assert mb.prepare({**spec, "batch_size": 3}, tmp_path / "again")["batch_size"] == 3
