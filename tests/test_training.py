"""Training and evaluation: ``mlcalc train`` / ``mlcalc eval`` on small generated EMT data."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.stress import voigt_6_to_full_3x3_stress
from safetensors.torch import load_file

from mlcalc import NEMPCalculator
from mlcalc.cli import main
from mlcalc.models import load_checkpoint
from mlcalc.training import LabelKeys, TrainConfig, read_structures, train
from mlcalc.training.budget import Budget, validation_subset
from mlcalc.training.config import parse_duration
from mlcalc.training.data import (
    atomic_energies_from,
    fit_atomic_energies,
    labeled_structure,
)
from mlcalc.training.graphs import GraphDataset, graph_bytes
from mlcalc.training.metrics import evaluate
from mlcalc.training.schedule import LearningRateSchedule, scheduled_weight

REPOSITORY = Path(__file__).resolve().parents[1]


def emt_frames(count: int, seed: int = 0) -> list[Atoms]:
    """Rattled, strained Cu/Al cells (8 atoms) labelled with EMT energy, forces and stress."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (1, 1, 2)
        for index in rng.choice(len(atoms), size=k % 4, replace=False):
            atoms[int(index)].symbol = "Al"
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.03, 0.03)), scale_atoms=True)
        atoms.rattle(0.1, seed=seed * 1000 + k)
        atoms.calc = EMT()
        labels = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write(folder / "train.xyz", emt_frames(24, seed=0))
    write(folder / "test.xyz", emt_frames(4, seed=1))
    return folder


def config_for(data_dir: Path, output_dir: Path, **overrides) -> TrainConfig:
    values = {
        "train_file": str(data_dir / "train.xyz"),
        "test_file": str(data_dir / "test.xyz"),
        "valid_fraction": 0.25,
        "architecture": "nemp",
        "model": {"preset": "small", "cutoff": 4.0, "neighbor_norm": "constant",
                  "avg_num_neighbors": "auto"},
        "batch_size": 4,
        "epochs": 4,
        "lr": 0.01,
        "dtype": "float64",
        "threads": 1,
        "output_dir": str(output_dir),
        **overrides,
    }  # fmt: skip
    return TrainConfig.from_dict(values)


def write_config(path: Path, config: TrainConfig) -> Path:
    path.write_text(config.to_yaml())
    return path


def floating_tensors(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if v.is_floating_point()}


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    first, second = floating_tensors(a), floating_tensors(b)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], atol=atol, rtol=0, msg=name)


# ----------------------------------------------------------------------- training runs
def test_tiny_run_lowers_validation_loss_and_writes_outputs(data_dir, tmp_path, capsys):
    config = config_for(data_dir, tmp_path / "run", epochs=6)
    result = train(config)
    out = tmp_path / "run"
    for name in ("best.safetensors", "final.safetensors", "training_state.pt", "config.yaml",
                 "metrics.csv", "test_metrics.json"):  # fmt: skip
        assert (out / name).is_file(), name
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    losses = [float(r.split(",")[4]) for r in rows[1:]]  # epoch, step, lr, train, valid
    assert min(losses[1:]) < losses[0]
    assert result.best_valid_loss == min(losses)
    # config.yaml is the resolved configuration: the model config has every field
    used = yaml.safe_load((out / "config.yaml").read_text())
    assert used["model"]["elements"] == ["Al", "Cu"]
    assert used["model"]["avg_num_neighbors"] > 10
    assert TrainConfig.from_dict(used).architecture == "nemp"
    # best.safetensors is ready for the calculators and has E0s fitted on the data
    calc = NEMPCalculator.from_checkpoint(out / "best.safetensors", device="cpu")
    atoms = emt_frames(1, seed=5)[0]
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_stress().shape == (6,)
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["n_structures"] == 4 and test["n_atoms"] == 32
    assert (test["model"], test["model_epoch"]) == ("final.safetensors", 5)  # keep: final
    assert result.model_path == out / "final.safetensors" and result.model_epoch == 5
    assert {"energy_mae", "forces_rmse", "stress_mae"} <= test.keys()
    printed = capsys.readouterr().out
    assert "epoch    5" in printed and "test set:" in printed


def test_graphs_beyond_graph_memory_are_built_per_batch(data_dir, tmp_path, capsys):
    structures = read_structures(data_dir / "train.xyz")
    every = GraphDataset(structures, 4.0, ["Al", "Cu"], torch.float64)
    one = graph_bytes(every.graph(0))
    some = GraphDataset(structures, 4.0, ["Al", "Cu"], torch.float64, 5 * one + one // 2)
    none = GraphDataset(structures, 4.0, ["Al", "Cu"], torch.float64, 0)
    assert (every.num_kept, none.num_kept, none.kept_bytes) == (24, 0, 0)
    assert 4 <= some.num_kept <= 6 and 0 < some.kept_bytes <= 5 * one + one // 2
    assert every.num_edges == none.num_edges
    assert every.average_num_neighbors() == none.average_num_neighbors()
    for indices in ([0, 1, 2], [4, 17, 23]):  # kept and rebuilt graphs batch alike
        expected = every.batch(indices).graph
        for dataset in (some, none):
            graph = dataset.batch(indices).graph
            for field in ("positions", "species", "edge_index", "shifts", "cell", "batch"):
                assert torch.equal(getattr(graph, field), getattr(expected, field)), field
    # a run that keeps no graph trains exactly as one that keeps all
    runs = {}
    for memory in (None, 0):
        out = tmp_path / f"memory-{memory}"
        train(config_for(data_dir, out, epochs=2, graph_memory=memory))
        runs[memory] = (out / "metrics.csv").read_text()
    losses = {m: [row.split(",")[3:5] for row in runs[m].splitlines()[1:]] for m in runs}
    assert losses[0] == losses[None] and len(losses[0]) == 2  # train and validation losses
    printed = capsys.readouterr().out
    assert "graphs: all 24 kept in memory" in printed
    assert "graphs: 0 of 24 kept in memory (0.00 GiB, graph_memory)" in printed
    with pytest.raises(ValueError, match="graph_memory must be >= 0 GiB or null"):
        TrainConfig.from_dict({"train_file": "x", "graph_memory": -1})


def test_output_dir_with_a_run_is_not_overwritten(data_dir, tmp_path):
    config = config_for(data_dir, tmp_path / "run", epochs=1)
    train(config)
    with pytest.raises(FileExistsError, match="--resume"):
        train(config)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(config_for(data_dir, tmp_path / "other"), resume=True)


def test_resume_refuses_a_changed_configuration(data_dir, tmp_path):
    train(config_for(data_dir, tmp_path / "run", epochs=1))
    with pytest.raises(ValueError, match="changed: lr"):
        train(config_for(data_dir, tmp_path / "run", epochs=2, lr=0.02), resume=True)


def test_kill_and_resume_equals_an_uninterrupted_run(data_dir, tmp_path):
    # 5 steps an epoch, a validation (and a saved state) every 3: most saves are mid-epoch
    uninterrupted = config_for(data_dir, tmp_path / "whole", epochs=10, valid_interval=3)
    train(uninterrupted)

    killed = config_for(data_dir, tmp_path / "killed", epochs=10, valid_interval=3)
    path = write_config(tmp_path / "killed.yaml", killed)
    command = [sys.executable, "-m", "mlcalc.cli", "train", str(path)]
    log = tmp_path / "killed.log"
    with open(log, "wb") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
        metrics = tmp_path / "killed" / "metrics.csv"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:  # 6 steps
                break
            time.sleep(0.02)
        assert process.poll() is None, log.read_text()
        process.send_signal(signal.SIGKILL)
        process.wait()
    state = torch.load(tmp_path / "killed" / "training_state.pt", weights_only=True)
    assert state["step"] < 48, "the run finished before it could be killed"

    result = train(killed, resume=True)
    assert result.epochs == 10
    for name in ("best.safetensors", "final.safetensors"):
        assert_same_weights(tmp_path / "whole" / name, tmp_path / "killed" / name, atol=1e-12)
    whole_rows = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()
    resumed_rows = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()
    assert len(resumed_rows) == len(whole_rows) == 1 + 17  # steps 3, 6, ..., 48 and 50
    for a, b in zip(whole_rows[1:], resumed_rows[1:], strict=True):  # same losses, not times
        np.testing.assert_allclose(
            [float(x) for x in a.split(",")[:-1]], [float(x) for x in b.split(",")[:-1]],
            rtol=1e-10,
        )  # fmt: skip


def test_two_process_ddp_equals_one_process(data_dir, tmp_path):
    single = config_for(data_dir, tmp_path / "one", epochs=3, test_file=None)
    train(single)
    double = config_for(data_dir, tmp_path / "two", epochs=3, test_file=None)
    path = write_config(tmp_path / "two.yaml", double)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "mlcalc.cli", "train", str(path),
    ]  # fmt: skip
    # gloo on the loopback interface: no dependence on how the host name resolves
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
    except subprocess.TimeoutExpired as error:
        pytest.fail(
            f"torchrun did not finish in 300 s; output so far:\n{error.stdout}\n{error.stderr}"
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout
    assert done.stdout.count("model (final, epoch") == 1  # only rank 0 reports
    assert_same_weights(tmp_path / "one" / "best.safetensors",
                        tmp_path / "two" / "best.safetensors", atol=1e-10)  # fmt: skip


def test_two_process_compiled_steps_equal_one_eager_process(data_dir, tmp_path):
    single = config_for(data_dir, tmp_path / "one", epochs=2, test_file=None, compile=False)
    train(single)
    double = config_for(data_dir, tmp_path / "two", epochs=2, test_file=None, compile=True)
    path = write_config(tmp_path / "two.yaml", double)
    # each process traces the same graph; AOTAutograd without code generation is quicker to
    # build than inductor (whose code is tested in test_compiled_training.py)
    script = tmp_path / "train_aot_eager.py"
    script.write_text(
        "import sys\n"
        "from mlcalc.models import traced\n"
        "traced.BACKEND = 'aot_eager'\n"
        "trace = traced.TracedEnergies._trace\n"
        "cell = list(traced.GRAPH_FIELDS).index('cell') - len(traced.GRAPH_FIELDS)\n"
        "def counting_trace(self, inputs):\n"
        "    print('traced a graph of', len(inputs[cell]), 'structures', flush=True)\n"
        "    return trace(self, inputs)\n"
        "traced.TracedEnergies._trace = counting_trace\n"
        "from mlcalc.cli import main\n"
        "sys.exit(main(['train', sys.argv[1]]))\n"
    )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), str(path),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout and "training steps compiled" in done.stdout
    # both processes compiled their share (2 of each batch of 4), and only that
    assert done.stdout.count("traced a graph of 2 structures") == 2, done.stdout
    assert_same_weights(tmp_path / "one" / "final.safetensors",
                        tmp_path / "two" / "final.safetensors", atol=1e-9)  # fmt: skip


def test_mlanet_conservative_trains_with_stress(data_dir, tmp_path):
    config = config_for(
        data_dir, tmp_path / "mlanet", architecture="mlanet", epochs=2, test_file=None,
        model={"lmax": 1, "channels": 8, "readout_channels": 8, "num_interactions": 1,
               "energy_mlp_hidden": [16], "cutoff": 4.0, "force_mode": "conservative"},
    )  # fmt: skip
    result = train(config)
    assert {"energy_mae", "forces_mae", "stress_mae"} <= result.valid_errors.keys()
    assert load_checkpoint(tmp_path / "mlanet" / "best.safetensors").architecture == "mlanet"


def test_fine_tuning_starts_from_a_checkpoint(data_dir, tmp_path):
    train(config_for(data_dir, tmp_path / "base", epochs=1, test_file=None))
    base = tmp_path / "base" / "best.safetensors"
    config = config_for(
        data_dir, tmp_path / "tuned", epochs=1, test_file=None, model={}, init_from=str(base)
    )
    train(config)
    before, after = load_checkpoint(base), load_checkpoint(tmp_path / "tuned" / "best.safetensors")
    assert after.config == before.config
    assert after.atomic_energies == pytest.approx(before.atomic_energies)  # e0s: keep
    with pytest.raises(ValueError, match="drop `model`"):
        config_for(data_dir, tmp_path / "x", init_from=str(base))


def test_cli_train_with_flag_overrides_and_eval(data_dir, tmp_path, capsys):
    config = config_for(data_dir, tmp_path / "ignored", epochs=50)
    path = write_config(tmp_path / "c.yaml", config)
    out = tmp_path / "cli"
    code = main(["train", str(path), "--epochs", "2", "--output_dir", str(out),
                 "--model", "{preset: small, cutoff: 3.5}"])  # fmt: skip
    assert code == 0
    used = yaml.safe_load((out / "config.yaml").read_text())
    assert used["epochs"] == 2 and used["model"]["cutoff"] == 3.5
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main(["eval", str(out / "best.safetensors"), str(data_dir / "test.xyz"), "--json",
                 "--plot", str(tmp_path / "parity.png")]) == 0  # fmt: skip
    errors = json.loads(capsys.readouterr().out)
    assert errors["n_structures"] == 4
    assert (tmp_path / "parity.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_train_errors_are_reported(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--epoch", "2"])  # argparse: unknown flag
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "training config not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_file: x.xyz\nlearning_rate: 0.1\n")
    assert main(["train", str(bad)]) == 2
    assert "'learning_rate'" in capsys.readouterr().err


# ------------------------------------------------------------------------ evaluation
def test_eval_equals_a_hand_computation(tmp_path, model_factory, capsys):
    model = model_factory(elements=["H", "O", "Cu"], cutoff=3.0)
    checkpoint = tmp_path / "model.safetensors"
    model.save(checkpoint)
    water = molecule("H2O")
    water.center(3.0)
    copper = bulk("Cu", "fcc", a=3.6) * (2, 2, 1)
    copper.rattle(0.05, seed=2)
    frames, references = [], []
    for k, atoms in enumerate([water, copper, water.copy()]):
        atoms = atoms.copy()
        atoms.rattle(0.02, seed=k)
        rng = np.random.default_rng(k)
        labels = {
            "energy": -3.0 * len(atoms) + rng.normal(),
            "forces": rng.normal(size=(len(atoms), 3)),
        }
        if atoms.pbc.all():
            labels["stress"] = rng.normal(size=6) * 0.01
        atoms.calc = SinglePointCalculator(atoms, **labels)
        frames.append(atoms)
        references.append(labels)
    data = tmp_path / "data.xyz"
    write(data, frames)

    assert main(["eval", str(checkpoint), str(data), "--json", "--device", "cpu"]) == 0
    errors = json.loads(capsys.readouterr().out)

    calc = NEMPCalculator(model, device="cpu")
    de, df, ds = [], [], []
    for atoms, labels in zip(read(data, ":"), references, strict=True):  # positions as written
        atoms.calc = calc
        de.append((atoms.get_potential_energy() - labels["energy"]) / len(atoms))
        df.append((atoms.get_forces() - labels["forces"]).ravel())
        if "stress" in labels:
            full = lambda v: np.array(  # noqa: E731
                [[v[0], v[5], v[4]], [v[5], v[1], v[3]], [v[4], v[3], v[2]]]
            )
            ds.append((full(atoms.get_stress()) - full(labels["stress"])).ravel())
    de, df, ds = np.array(de), np.concatenate(df), np.concatenate(ds)
    expected = {
        "n_structures": 3,
        "n_atoms": 3 + 4 + 3,
        "energy_mae": 1000 * np.abs(de).mean(),
        "energy_rmse": 1000 * np.sqrt((de**2).mean()),
        "forces_mae": 1000 * np.abs(df).mean(),
        "forces_rmse": 1000 * np.sqrt((df**2).mean()),
        "stress_mae": 1000 * np.abs(ds).mean(),
        "stress_rmse": 1000 * np.sqrt((ds**2).mean()),
    }
    assert errors.keys() == expected.keys()
    for key, value in expected.items():
        assert errors[key] == pytest.approx(value, rel=1e-9), key

    assert main(["eval", str(checkpoint), str(data), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "meV/atom" in table and "GPa" in table


def test_missing_labels_are_masked_per_label(tmp_path, model_factory):
    frames = emt_frames(3)
    frames[0].calc = SinglePointCalculator(frames[0], energy=frames[0].get_potential_energy())
    frames[1].calc = SinglePointCalculator(frames[1], forces=frames[1].get_forces())
    path = tmp_path / "partial.xyz"
    write(path, frames)
    structures = read_structures(path)
    assert [s.energy is None for s in structures] == [False, True, False]
    assert [s.forces is None for s in structures] == [True, False, False]
    assert [s.stress is None for s in structures] == [True, True, False]
    model = model_factory(elements=["Al", "Cu"])
    dataset = GraphDataset(structures, model.cutoff, model.elements, torch.float64)
    counts = evaluate(model, dataset).sums[:, 0].tolist()
    assert counts == [2, 3 * 8 * 2, 9]


# ---------------------------------------------------------------------------- bad data
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.calc.results.update(energy=float("nan")), "frame 1: energy .* NaN"),
        (lambda a: a.calc.results.update(forces=np.zeros((3, 3))), r"frame 1: forces .* \(8, 3\)"),
        (lambda a: a.calc.results.update(stress=np.zeros(4)), "frame 1: stress .* shape"),
    ],
)
def test_bad_labels_are_refused_naming_file_and_frame(tmp_path, edit, message):
    frames = emt_frames(2)
    labeled_structure(frames[1], LabelKeys(), "fine before the edit")
    edit(frames[1])
    with pytest.raises(ValueError, match=message):
        labeled_structure(frames[1], LabelKeys(), f"{tmp_path}/bad.xyz, frame 1")


def test_bad_files_are_refused_naming_file_and_frame(tmp_path):
    frames = emt_frames(3)
    path = tmp_path / "nan.xyz"
    write(path, frames)
    text = path.read_text().splitlines()
    header = len(frames[0]) + 2
    text[2 * header + 1] = text[2 * header + 1].replace("energy=", "energy=nan ignored=")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=rf"{path.name}, frame 2: energy .* NaN"):
        read_structures(path)
    truncated = tmp_path / "truncated.xyz"
    write(truncated, frames)
    truncated.write_text("\n".join(truncated.read_text().splitlines()[: header + 5]) + "\n")
    with pytest.raises(ValueError, match=rf"{truncated.name}: cannot read frame 1"):
        read_structures(truncated)
    with pytest.raises(FileNotFoundError, match="data file not found"):
        read_structures(tmp_path / "missing.xyz")
    molecule_file = tmp_path / "molecule.xyz"
    water = molecule("H2O")
    water.calc = SinglePointCalculator(water, energy=1.0, stress=np.zeros(6))
    write(molecule_file, [water])
    with pytest.raises(ValueError, match=r"frame 0: stress .* not periodic"):
        read_structures(molecule_file)


@pytest.mark.parametrize("suffix", [".db", ".json"])
def test_reads_labels_from_an_ase_database(tmp_path, suffix):
    from ase.db import connect

    frames = emt_frames(3)  # EMT results attached as the calculator's
    path = tmp_path / f"data{suffix}"
    with connect(path) as database:
        for k, atoms in enumerate(frames):
            forces, stress = atoms.get_forces(), atoms.get_stress()
            # the same labels twice: as stored results, and under names of the user's own
            database.write(atoms, dft_energy=atoms.get_potential_energy() + k,
                           data={"dft_forces": 2 * forces, "dft_stress": 3 * stress})  # fmt: skip
    stored = read_structures(path)
    own = read_structures(path, LabelKeys("dft_energy", "dft_forces", "dft_stress"))
    for k, (atoms, a, b) in enumerate(zip(frames, stored, own, strict=True)):
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        stress = voigt_6_to_full_3x3_stress(atoms.get_stress())
        assert (a.energy, b.energy) == (energy, energy + k)
        np.testing.assert_array_equal(a.forces, forces)
        np.testing.assert_array_equal(b.forces, 2 * forces)
        np.testing.assert_array_equal(a.stress, stress)
        np.testing.assert_allclose(b.stress, 3 * stress, rtol=1e-15)
        np.testing.assert_array_equal(a.atoms.positions, atoms.positions)
        np.testing.assert_array_equal(b.atoms.numbers, atoms.numbers)
    assert stored[1].source == f"{path}, frame 1"


def test_unknown_element_names_the_frame(tmp_path, model_factory):
    frames = emt_frames(2)
    frames[1][0].symbol = "Au"
    path = tmp_path / "gold.xyz"
    write(path, frames)
    with pytest.raises(KeyError, match=r"frame 1: element\(s\) Au not supported"):
        GraphDataset(read_structures(path), 4.0, ["Al", "Cu"], torch.float64)


def test_virial_key_gives_stress(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    virial = np.diag([1.0, 2.0, 3.0])
    atoms.info["virial"] = virial.ravel()
    atoms.info["REF_energy"] = -1.0
    structure = labeled_structure(atoms, LabelKeys(energy="REF_energy"), "x")
    np.testing.assert_allclose(structure.stress, -virial / atoms.get_volume())
    assert structure.energy == -1.0


# ------------------------------------------------------------------- E0s and schedules
def test_fit_atomic_energies_exact_and_degenerate():
    def labelled(symbols: str, energy: float):
        atoms = Atoms(symbols, positions=np.arange(3 * len(symbols)).reshape(-1, 3) * 2.0)
        return labeled_structure(
            Atoms(atoms, calculator=SinglePointCalculator(atoms, energy=energy)), LabelKeys(), "x"
        )

    e0 = {"H": -1.5, "O": -7.0}
    exact = [labelled(s, sum(e0[c] for c in s)) for s in ("H", "HO", "HHO", "OO")]
    assert fit_atomic_energies(exact, ["H", "O"]) == pytest.approx(e0)
    # one composition only (like liquid water): the mean energy per atom for both elements
    same = [labelled("HHO", -30.0), labelled("HHO", -30.3)]
    assert fit_atomic_energies(same, ["H", "O"]) == pytest.approx({"H": -10.05, "O": -10.05})
    assert atomic_energies_from({"H": 1, "O": 2}, same, ["H", "O"]) == {"H": 1.0, "O": 2.0}
    with pytest.raises(ValueError, match="no reference energy for element"):
        atomic_energies_from({"H": 1}, same, ["H", "O"])


def test_isolated_atoms_file(tmp_path):
    atoms = [Atoms("H"), Atoms("O")]
    for a, e in zip(atoms, (-13.6, -432.0), strict=True):
        a.calc = SinglePointCalculator(a, energy=e)
    path = tmp_path / "iso.xyz"
    write(path, atoms)
    assert atomic_energies_from(str(path), [], ["H", "O"]) == {"H": -13.6, "O": -432.0}


def test_schedules():
    schedule = LearningRateSchedule(0.01, 1e-4, "plateau", warmup_epochs=2, warmup_factor=0.1,
                                    factor=0.5, patience=1)  # fmt: skip
    assert [schedule.lr_at(e) for e in range(3)] == pytest.approx([0.001, 0.0055, 0.01])
    for epoch, loss in enumerate([5, 5, 4, 4, 4, 4]):
        schedule.step(epoch, loss)
    assert schedule.lr_at(6) == pytest.approx(0.005)
    assert scheduled_weight(10.0, 0.1, schedule.progress(6)) == pytest.approx(
        0.1 + (0.005 - 1e-4) / (0.01 - 1e-4) * 9.9
    )
    cosine = LearningRateSchedule(0.01, 0.0, "cosine", epochs=10)
    assert cosine.lr_at(0) == pytest.approx(0.01) and cosine.lr_at(10) == pytest.approx(0.0)
    assert parse_duration("1h30m") == 5400 and parse_duration("90s") == 90
    assert parse_duration(12) == 12
    with pytest.raises(ValueError, match="max_time"):
        parse_duration("soon")
    # the budget check: the median recent step (the first also compiles) plus the final
    # validation pass, predicted from the steps until a validation was timed
    budget = Budget(100.0, elapsed=90.0, valid_structures=40, batch_size=4)
    for seconds in (60.0, 1.0, 1.0):
        budget.record_step(seconds)
    assert budget.final_pass() == pytest.approx(0.5 * 1.0 * 40 / 4)
    assert not budget.exhausted()  # 90 + 1 + 5 < 100
    # schedules run over the training time: the budget less the final validation pass
    assert budget.fraction() == pytest.approx(90 / 95, rel=1e-3)
    budget.record_validation(3.0, structures=10)  # the row that closes a run takes 3 s more
    assert budget.final_pass() == pytest.approx(12.0) and budget.exhausted()  # 90 + 1 + 3 + 12
    # a step that compiled (30 of the 90 s) predicts no step and is no training time
    compiling = Budget(100.0, elapsed=90.0, valid_structures=40, batch_size=4)
    compiling.record_step(30.0, compiled=True)
    for seconds in (1.0, 1.0):
        compiling.record_step(seconds)
    assert compiling.final_pass() == pytest.approx(5.0) and not compiling.exhausted()
    assert compiling.fraction() == pytest.approx(60 / 65, rel=1e-3)
    assert validation_subset(5, 10, seed=0) == [0, 1, 2, 3, 4]
    subset = validation_subset(100, 10, seed=0)
    assert len(subset) == 10 and subset == sorted(subset) == validation_subset(100, 10, seed=0)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        TrainConfig.from_dict({"train_file": "x", "batchsize": 3})
    with pytest.raises(ValueError, match="train_file is required"):
        TrainConfig.from_dict({})
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig.from_dict({"train_file": "x", "loss": "l3"})
    with pytest.raises(ValueError, match="max_time"):
        TrainConfig.from_dict({"train_file": "x", "max_time": "-1m"})
    with pytest.raises(ValueError, match="keep must be one of final, best"):
        TrainConfig.from_dict({"train_file": "x", "keep": "last"})


def test_config_reads_numbers_that_yaml_leaves_as_text(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot, no exponent sign) as a string
    path = tmp_path / "config.yaml"
    path.write_text("train_file: x.xyz\nweight_decay: 1e-3\nlr: 2E-2\nepochs: 5.0\n")
    config = TrainConfig.from_yaml(path)
    assert config.weight_decay == 0.001 and config.lr == 0.02
    assert config.epochs == 5 and isinstance(config.epochs, int)
    with pytest.raises(ValueError, match="lr must be a number, got 'fast'"):
        TrainConfig.from_dict({"train_file": "x", "lr": "fast"})
    with pytest.raises(ValueError, match=r"epochs must be an integer, got 2\.5"):
        TrainConfig.from_dict({"train_file": "x", "epochs": 2.5})


def test_shipped_configs_parse():
    configs = sorted((REPOSITORY / "examples" / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        config = TrainConfig.from_yaml(path)
        assert config.output_dir.startswith("runs/"), path


@pytest.mark.skipif(not (REPOSITORY.parent / "shared" / "data").is_dir(),
                    reason="../shared/data (the reference DFT data) is not present")  # fmt: skip
def test_reads_the_reference_data_sets():
    shared = REPOSITORY.parent / "shared" / "data"
    silicon = read_structures(shared / "mlearn" / "Si" / "test.extxyz")
    assert all(s.stress is not None and s.forces is not None for s in silicon)
    ethanol = read_structures(shared / "ethanol" / "test_MD.xyz")
    assert len(ethanol) == 1000 and all(s.stress is None for s in ethanol)
    e0 = atomic_energies_from(str(shared / "ethanol" / "isolated_atoms.xyz"), ethanol,
                              ["H", "C", "O"])  # fmt: skip
    assert all(math.isfinite(v) and v < 0 for v in e0.values())
