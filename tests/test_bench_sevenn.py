"""bench/sevenn_baseline.py and bench/sevenn_worker.py: arguments, the input.yaml for a spec,
E0s, the validation curve from SevenNet's lc.csv, the worker's loader pieces and stress labels
(no SevenNet venv needed), and one short end-to-end run where that venv exists."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import load_bench

sb = load_bench("sevenn_baseline")  # puts bench/ on sys.path, which the worker imports from
worker = load_bench("sevenn_worker")  # standard library only at import
SEVENN_PYTHON = Path("~/.cache/mlcalc/bench-peers/venv-sevenn/bin/python").expanduser()

#: The head and rows of a real lc.csv (SevenNet 0.13.0, ethanol, the error_record we ask for).
LC_CSV = """\
epoch,lr,trainset_Energy_RMSE,trainset_Force_RMSE,trainset_Force_ComponentRMSE,\
trainset_TotalLoss,validset_Energy_RMSE,validset_Force_RMSE,validset_Force_ComponentRMSE,\
validset_TotalLoss
1,0.005000,1.467074,1.844083,1.064682,2.265660,0.040025,1.255100,0.724632,0.054111
2,0.004950,0.033353,0.995264,0.574616,0.034131,0.017174,0.770467,0.444829,0.020082
"""


def test_arguments() -> None:
    args = sb.parse_args(["ethanol"])
    assert args.size == "default" and args.budget_s is None and args.threads is None
    assert args.out == Path("runs/sevenn-ethanol")
    assert args.config == sb.ROOT / "examples/configs/ethanol-nemp.yaml"
    argv = ["x", "--config", "c.yaml", "--max-time", "30m", "--threads", "1", "--size", "l2"]
    args = sb.parse_args([*argv, "--out", "o", "--skip-setup", "--cache", "/c", "--overwrite"])
    assert args.budget_s == 1800.0 and args.size == "l2" and args.out == Path("o")
    assert args.skip_setup and args.overwrite and args.cache == Path("/c")


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["si", "--size", "l3"],
        ["si", "--max-time", "soon"],
        ["si", "--threads", "0"],
        ["si", "--", "epochs=3"],  # SevenNet's trainer takes no extra arguments
    ],
)
def test_bad_arguments_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        sb.parse_args(argv)


def test_sizes_are_the_architectures_whose_speed_is_measured() -> None:
    from _peer_worker import CUTOFF, PEER_CONFIGS

    for size, model in sb.MODEL_SIZES.items():
        name = "sevenn" if size == "default" else f"sevenn-{size}"
        if name not in PEER_CONFIGS:  # the speed benchmark does not time this size
            continue
        timed = PEER_CONFIGS[name][1]
        assert model == {
            "channel": timed["channels"],
            "lmax": timed["lmax"],
            "num_convolution_layer": timed["num_convolution"],
        }
    assert sb.MODEL_SIZES["l2"] == {**sb.MODEL_SIZES["default"], "lmax": 2}
    assert sb.MODEL_COMMON["cutoff"] == CUTOFF
    assert sb.MODEL_COMMON["is_parity"] and not sb.MODEL_COMMON["use_bias_in_linear"]
    assert "lmax 1" in sb.describe("default") and "(size l2)" in sb.describe("l2")


def input_yaml(stress: bool, size: str = "default") -> dict[str, Any]:
    spec = {"seed": 3, "epochs": 1_000_000, "batch_size": 5}
    config = sb.input_config(spec, size, Path("/d"), {"H": -13.6, "O": -2040.5}, stress)
    return yaml.safe_load(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))


def test_input_yaml_without_stress() -> None:
    config = input_yaml(stress=False)
    assert config["model"] == {**sb.MODEL_COMMON, **sb.MODEL_SIZES["default"]}
    train = config["train"]
    assert train["optimizer"] == "adam" and train["optim_param"] == {"lr": 0.005}
    assert train["scheduler"] == "exponentiallr" and train["scheduler_param"] == {"gamma": 0.99}
    assert train["loss"] == "mse" and train["force_loss_weight"] == 0.1
    assert train["random_seed"] == 3 and train["epoch"] == 1_000_000
    assert train["is_train_stress"] is False and "stress_loss_weight" not in train
    assert ["Force", "ComponentRMSE"] in train["error_record"]
    assert not any("Stress" in kind for kind, _ in train["error_record"])
    assert train["error_record"][-1] == ["TotalLoss", "None"]
    data = config["data"]
    assert data["batch_size"] == 5 and data["dtype"] == "single" and data["scale"] == "force_rms"
    assert len(data["shift"]) == 119 and data["shift"][1] == -13.6 and data["shift"][8] == -2040.5
    assert sum(value != 0 for value in data["shift"]) == 2
    assert data["data_format_args"] == {
        "index": ":",
        "energy_key": "REF_energy",
        "force_key": "REF_forces",
    }
    assert data["load_trainset_path"] == ["/d/train.extxyz"]
    assert data["load_validset_path"] == ["/d/valid.extxyz"]


def test_input_yaml_with_stress_and_l2() -> None:
    config = input_yaml(stress=True, size="l2")
    assert config["model"]["lmax"] == 2
    train = config["train"]
    assert train["is_train_stress"] is True
    assert isinstance(train["stress_loss_weight"], float) and train["stress_loss_weight"] == 1e-6
    assert ["Stress", "RMSE"] in train["error_record"]
    assert config["data"]["data_format_args"]["stress_key"] == "REF_stress"


def test_e0s_are_ours(tmp_path: Path) -> None:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    from test_training import emt_frames  # 8-atom Cu/Al cells with EMT labels

    from mlcalc.training.data import fit_atomic_energies, read_structures, split

    write(tmp_path / "train.xyz", emt_frames(12))
    data_file = tmp_path / "train.xyz"
    spec = {"train_file": data_file, "valid_file": None, "valid_fraction": 0.25, "seed": 0,
            "test_file": data_file, "e0s": "fit", "batch_size": None}  # fmt: skip
    sb.prepare(spec, tmp_path / "data")
    train, _ = split(read_structures(tmp_path / "train.xyz"), 0.25, 0)
    fitted = sb.atomic_energies("fit", tmp_path / "data")
    assert fitted == pytest.approx(fit_atomic_energies(train, ["Al", "Cu"]))
    isolated = [Atoms("Cu"), Atoms("Al")]
    for atoms, energy in zip(isolated, (-0.5, -0.25), strict=True):
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
    write(tmp_path / "cu.xyz", isolated[:1])
    with pytest.raises(ValueError, match="Al"):
        sb.atomic_energies(tmp_path / "cu.xyz", tmp_path / "data")
    write(tmp_path / "atoms.xyz", isolated)
    assert sb.atomic_energies(tmp_path / "atoms.xyz", tmp_path / "data") == {
        "Al": -0.25,
        "Cu": -0.5,
    }
    assert sb.atomic_energies({"Cu": 1.0, "Al": 2.0}, tmp_path / "data") == {"Al": 2.0, "Cu": 1.0}


def test_curve_from_lc_csv() -> None:
    curve = sb.sevenn_curve(LC_CSV, [11.3, 21.8])
    assert curve == [[11.3, 724.632], [21.8, 444.829]]
    assert sb.sevenn_curve(LC_CSV, [11.3, 21.8, 30.0]) == curve  # stopped before the row
    assert sb.sevenn_curve(LC_CSV.splitlines()[0] + "\n", [5.0]) == []


class Loader:
    """A loader of ``n`` batches that gives a new order on every pass, as a shuffled one."""

    def __init__(self, n: int) -> None:
        self.n, self.passes = n, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self.passes += 1
        return iter([(self.passes, k) for k in range(self.n)])


def test_pieces_cut_epochs_without_spanning_two() -> None:
    loader = Loader(5)
    pieces = worker.Pieces(loader, 2)
    assert pieces.per_epoch == 3 and pieces.steps_per_epoch == 5
    taken, ends = [], []
    for _ in range(6):
        taken.append(list(pieces))
        ends.append(pieces.epoch_ended)
    assert [len(piece) for piece in taken] == [2, 2, 1, 2, 2, 1]
    assert ends == [False, False, True, False, False, True]
    assert [batch for piece in taken[:3] for batch in piece] == [(1, k) for k in range(5)]
    assert taken[3][0] == (2, 0) and pieces.steps == 10
    whole = worker.Pieces(Loader(4), 10**9)  # no more than an epoch: SevenNet's own loop
    assert whole.per_epoch == 1 and len(list(whole)) == 4 and whole.epoch_ended


def test_stress_labels_become_voigt() -> None:
    from ase import Atoms
    from ase.stress import full_3x3_to_voigt_6_stress

    tensor = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    frames = [Atoms("H"), Atoms("H")]
    frames[0].info["REF_stress"] = tensor
    worker.read_voigt_stress("REF_stress", frames)
    assert np.array_equal(frames[0].info["REF_stress"], full_3x3_to_voigt_6_stress(tensor))
    assert np.array_equal(frames[0].info["REF_stress"], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert np.isnan(frames[1].info["REF_stress"]).all() and frames[1].info["REF_stress"].shape == (
        6,
    )
    worker.read_voigt_stress(None, frames[1:])  # no stress key: nothing to do


@pytest.mark.skipif(
    not SEVENN_PYTHON.is_file(),
    reason=f"no SevenNet venv at {SEVENN_PYTHON.parent.parent} (`python bench/peers.py "
    "--setup-only` installs it)",
)
def test_end_to_end_on_emt_cells_with_stress(tmp_path: Path) -> None:
    from ase.io import write
    from test_training import emt_frames

    write(tmp_path / "train.xyz", emt_frames(16, seed=0))
    write(tmp_path / "test.xyz", emt_frames(3, seed=1))
    config = tmp_path / "data.yaml"
    config.write_text(
        f"train_file: {tmp_path / 'train.xyz'}\ntest_file: {tmp_path / 'test.xyz'}\ne0s: fit\n"
    )
    out = tmp_path / "run"
    argv = ["emt", "--config", str(config), "--max-time", "6s", "--threads", "1"]
    assert sb.main([*argv, "--out", str(out), "--skip-setup"]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n_structures"] == 3 and metrics["dtype"] == "float32"
    assert all(math.isfinite(metrics[f"{k}_rmse"]) for k in ("energy", "forces", "stress"))
    assert metrics["stopped_by"] == "budget" and metrics["epochs"] >= 1
    assert metrics["train_s"] == pytest.approx(6.0, abs=3.0)
    curve = json.loads((out / "curve.json").read_text())
    assert len(curve) == metrics["validations"] >= 1 and curve[0][0] > 0
    marker = json.loads((out / sb.MARKER).read_text())
    assert marker["n_train"] + marker["n_valid"] == 16 and set(marker["e0s_eV"]) == {"Al", "Cu"}
