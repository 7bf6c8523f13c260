"""Total charge and spin as inputs: reading and checks, graphs, models, calculator, data."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.io import write

from mlcalc.calculators import MLANetCalculator, NEMPCalculator
from mlcalc.electrons import read_charge_state
from mlcalc.graph import batch_graphs, build_graph
from mlcalc.models import NEMP, MLANet, MLANetConfig, NEMPConfig, load_checkpoint
from mlcalc.models.checkpoint import read_checkpoint
from mlcalc.training import GraphDataset, LabelKeys, TrainConfig, read_structures

WATER = np.array([8, 1, 1])


def test_defaults_follow_the_electron_count():
    assert read_charge_state({}, WATER) == (0, 1)  # 10 electrons: singlet
    assert read_charge_state({"charge": 1}, WATER) == (1, 2)  # 9 electrons: doublet
    assert read_charge_state({"charge": -1.0, "spin": 4}, WATER) == (-1, 4)
    assert read_charge_state({"charge": np.int64(2), "spin": np.array([3])}, WATER) == (2, 3)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"charge": 0.5}, "total charge .* must be an integer, got 0.5"),
        ({"charge": "1"}, "must be an integer"),
        ({"charge": 11}, "larger than the number of protons"),
        ({"charge": -1000}, "adds more electrons than the neutral structure has"),
        ({"spin": 2}, "impossible for 10 electrons"),
        ({"charge": 1, "spin": 1}, "impossible for 9 electrons"),
        ({"spin": 13}, "needs 12 unpaired electrons, but the structure has only 10"),
        ({"spin": 0}, "must be >= 1"),
    ],
)
def test_bad_charge_states_are_refused(info, message):
    with pytest.raises(ValueError, match=message):
        read_charge_state(info, WATER)
    atoms = molecule("H2O")
    atoms.info.update(info)
    with pytest.raises(ValueError, match="structure 0: "):
        build_graph(atoms, 3.0)


def test_graphs_carry_charge_and_spin_per_structure():
    cation, neutral = molecule("H2O"), molecule("CH4")
    cation.info["charge"] = 1
    graph = build_graph([cation, neutral], 3.0)
    assert graph.charge.tolist() == [1, 0] and graph.spin.tolist() == [2, 1]
    merged = batch_graphs([build_graph(neutral, 3.0), graph])
    assert merged.total_charge().tolist() == [0, 1, 0]
    assert merged.spin_multiplicity().tolist() == [1, 2, 1]
    moved = graph.to(dtype=torch.float32)
    assert moved.charge.dtype == torch.int64 and moved.charge.tolist() == [1, 0]
    bare = build_graph(cation, 3.0)
    bare.charge = bare.spin = None  # graphs built elsewhere: neutral, lowest spin
    assert bare.total_charge().tolist() == [0] and bare.spin_multiplicity().tolist() == [1]


def _models(**options):
    torch.manual_seed(0)
    elements = ["H", "C", "O"]
    yield NEMP(NEMPConfig.preset("small", elements=elements, cutoff=3.5, **options)).double()
    small = dict(channels=8, lmax=1, num_interactions=1, num_heads=2, readout_channels=8)
    for mode in ("direct", "conservative"):
        config = MLANetConfig(
            elements=elements, cutoff=3.5, energy_mlp_hidden=[8], force_mode=mode, **small
        )
        for name, value in options.items():
            setattr(config, name, value)
        if mode == "direct" and config.long_range is not None:
            continue
        yield MLANet(MLANetConfig.from_dict(config.to_dict())).double()


def _calculator(model):
    calculator_class = NEMPCalculator if isinstance(model, NEMP) else MLANetCalculator
    return calculator_class(model, device="cpu", dtype="float64")


@pytest.mark.parametrize("long_range", [None, "coulomb"])
def test_charge_changes_the_energy_and_the_cache_is_not_reused(long_range):
    for model in _models(charge_embedding=True, long_range=long_range):
        atoms = molecule("CH3OH")
        atoms.calc = _calculator(model)
        neutral = atoms.get_potential_energy()
        atoms.info["charge"] = 1
        cation = atoms.get_potential_energy()
        assert abs(cation - neutral) > 1e-6
        atoms.info["spin"] = 4
        quartet = atoms.get_potential_energy()
        assert abs(quartet - cation) > 1e-6
        del atoms.info["charge"], atoms.info["spin"]
        assert atoms.get_potential_energy() == pytest.approx(neutral, abs=1e-12)


def test_batches_of_different_charges_equal_one_at_a_time():
    structures = []
    for charge, name in [(0, "CH3OH"), (1, "CH3OH"), (-1, "H2O"), (2, "CH4")]:
        atoms = molecule(name)
        atoms.info["charge"] = charge
        structures.append(atoms)
    for long_range in (None, "coulomb"):
        for model in _models(charge_embedding=True, long_range=long_range):
            calc = _calculator(model)
            batched = calc.calculate_batch(structures)
            for atoms, result in zip(structures, batched, strict=True):
                atoms.calc = calc
                assert result["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
                np.testing.assert_allclose(result["forces"], atoms.get_forces(), atol=1e-10)


def test_a_model_without_charge_input_warns_once():
    model = next(_models())
    atoms = molecule("H2O")
    atoms.calc = _calculator(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neutral = atoms.get_potential_energy()
    atoms.info["charge"] = 1
    with pytest.warns(UserWarning, match="non-zero total charge .* ignores it"):
        assert atoms.get_potential_energy() == pytest.approx(neutral, abs=1e-12)
    atoms.info["charge"] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.get_potential_energy()


def test_checkpoints_round_trip_the_new_fields(tmp_path):
    for model in _models(charge_embedding=True, long_range="coulomb"):
        path = tmp_path / f"{model.architecture}.safetensors"
        model.save(path)
        config = json.loads(read_checkpoint(path)[0]["config"])
        assert config["charge_embedding"] is True and config["long_range"] == "coulomb"
        loaded = load_checkpoint(path)
        assert loaded.config == model.config
        atoms = molecule("CH3OH")
        atoms.info["charge"] = 1
        energies = [_calculator(m).calculate_batch([atoms])[0]["energy"] for m in (model, loaded)]
        assert energies[0] == energies[1]


def test_older_checkpoints_load_with_the_defaults():
    # the shipped `acac` model as it was before charge inputs existed (2026-11)
    older = Path(__file__).parent / "data" / "nemp_before_charge_inputs.safetensors"
    metadata, _ = read_checkpoint(older)
    stored = json.loads(metadata["config"])
    assert "charge_embedding" not in stored and "long_range" not in stored
    model = load_checkpoint(older)
    assert model.config.charge_embedding is False and model.config.long_range is None
    assert model.charge_spin is None and model.coulomb is None


def test_training_data_reads_charge_and_spin_keys(tmp_path):
    frames = []
    for charge in (0, 1):
        atoms = molecule("H2O")
        atoms.info.update(energy=-1.0 - charge, total_charge=charge, multiplicity=2 * charge + 1)
        atoms.arrays["forces"] = np.zeros((3, 3))
        frames.append(atoms)
    frames[1].info["multiplicity"] = 2
    path = tmp_path / "data.extxyz"
    write(path, frames)
    keys = TrainConfig(train_file=str(path), charge_key="total_charge", spin_key="multiplicity")
    structures = read_structures(path, keys.label_keys())
    assert [s.atoms.info.get("charge") for s in structures] == [0, 1]
    dataset = GraphDataset(structures, 3.0, ["H", "O"], torch.float64)
    batch = dataset.batch([0, 1])
    assert batch.graph.charge.tolist() == [0, 1] and batch.graph.spin.tolist() == [1, 2]
    frames[1].info["multiplicity"] = 1  # 9 electrons cannot be a singlet
    write(path, frames)
    with pytest.raises(ValueError, match="frame 1: spin multiplicity 1 is impossible"):
        read_structures(path, LabelKeys(charge="total_charge", spin="multiplicity"))


def test_charged_molecule_in_mlcalc_eval(tmp_path):
    from mlcalc.training.evaluation import evaluate_file

    model = next(_models(charge_embedding=True))
    model.save(tmp_path / "model.safetensors")
    atoms = molecule("H2O")
    atoms.info.update(energy=-1.0, q=1)
    write(tmp_path / "data.extxyz", [atoms])
    errors, _ = evaluate_file(
        tmp_path / "model.safetensors", tmp_path / "data.extxyz", charge_key="q"
    )
    atoms.info["charge"] = 1
    expected = _calculator(model).calculate_batch([atoms])[0]["energy"]
    assert errors["energy_mae"] == pytest.approx(abs(expected + 1.0) / 3 * 1000, rel=1e-6)


def test_training_with_charge_inputs_and_long_range(tmp_path):
    from mlcalc.training import train

    frames = []
    rng = np.random.default_rng(0)
    for k in range(12):
        atoms = molecule("H2O")
        atoms.rattle(0.05, seed=k)
        charge = int(rng.integers(-1, 2))
        atoms.info.update(energy=-14.0 - 3.0 * charge, q=charge)
        atoms.arrays["forces"] = rng.normal(0.0, 0.1, (3, 3))
        frames.append(atoms)
    write(tmp_path / "train.extxyz", frames)
    config = TrainConfig.from_dict(
        {
            "train_file": str(tmp_path / "train.extxyz"),
            "valid_fraction": 0.25,
            "charge_key": "q",
            "model": {
                "preset": "small",
                "cutoff": 3.0,
                "charge_embedding": True,
                "long_range": "coulomb",
            },
            "e0s": {"H": -3.0, "O": -8.0},
            "batch_size": 3,
            "epochs": 2,
            "dtype": "float64",
            "threads": 1,
            "output_dir": str(tmp_path / "run"),
        }
    )
    train(config)
    model = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert model.config.charge_embedding and model.config.long_range == "coulomb"


def test_a_run_from_before_charge_key_resumes(tmp_path):
    from mlcalc.training.trainer import Trainer

    config = TrainConfig(train_file="x.extxyz")
    trainer = Trainer.__new__(Trainer)
    trainer.config = config
    saved = config.to_dict()
    del saved["charge_key"], saved["spin_key"]  # a state written before these keys existed
    trainer._check_resumable({"config": saved})
    saved["charge_key"] = "q"
    with pytest.raises(ValueError, match="changed: charge_key"):
        trainer._check_resumable({"config": saved})
