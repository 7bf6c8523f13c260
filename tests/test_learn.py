"""``mlcalc learn``: the active-learning loop with real teachers (EMT) and real executors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.md import thermalize_momenta
from ase.md.langevin import Langevin
from learn_teachers import structure_key

from mlcalc import NEMPCalculator
from mlcalc.cli import main
from mlcalc.learn import LearnConfig, TeacherSpec, learn
from mlcalc.learn.explore import (
    Trajectory,
    farthest_points,
    fingerprints,
    perturbed_copies,
    select,
    tag,
)
from mlcalc.learn.labelling import label_candidates, open_executor
from mlcalc.learn.labels import LabelStore

TESTS = Path(__file__).resolve().parent
TINY_MODEL = {"preset": "small", "cutoff": 4.0, "channels": 4, "num_interactions": 1}
TINY_TRAINING = {"epochs": 12, "batch_size": 2, "lr": 0.02, "threads": 1, "dtype": "float64"}


def copper() -> Atoms:
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (1, 1, 2)


@pytest.fixture(scope="module")
def start_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("start") / "cu.xyz"
    write(path, copper())
    return path


@pytest.fixture(scope="module")
def test_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frames of the teacher's own MD at 800 K, labelled by it: never shown to the loop."""
    atoms = copper()
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=800, rng=np.random.default_rng(1))
    dynamics = Langevin(
        atoms,
        2 * units.fs,
        temperature_K=800,
        friction=0.02 / units.fs,
        fixcm=False,
        rng=np.random.default_rng(2),
    )
    frames = []
    for _ in range(12):
        dynamics.run(15)
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(
            frame,
            energy=atoms.get_potential_energy(),
            forces=atoms.get_forces(),
            stress=atoms.get_stress(),
        )
        frames.append(frame)
    path = tmp_path_factory.mktemp("test") / "test.xyz"
    write(path, frames)
    return path


def config(start_file: Path, output_dir: Path, **overrides) -> LearnConfig:
    values = {
        "teacher": "emt",
        "start": str(start_file),
        "output_dir": str(output_dir),
        "committee": 2,
        "model": TINY_MODEL,
        "training": TINY_TRAINING,
        "initial_labels": 6,
        "labels_per_round": 6,
        "max_labels": 60,
        "max_rounds": 2,
        "temperatures": [800],
        "md_steps": 60,
        "sample_interval": 5,
        "uncertainty_threshold": 1e-4,
        "uncertainty_stop": 5.0,
        "dtype": "float64",
        "threads": 1,
        **overrides,
    }
    return LearnConfig.from_dict(values)


# --------------------------------------------------------------------------- the whole loop
def test_two_rounds_with_emt_grow_labels_and_lower_the_test_error(
    start_file, test_file, tmp_path, capsys
):
    out = tmp_path / "run"
    path = tmp_path / "learn.yaml"
    path.write_text(config(start_file, out, test_file=str(test_file)).to_yaml())
    assert main(["learn", str(path), "--workers", "2"]) == 0
    assert "12 labels in 2 rounds" in capsys.readouterr().out
    with open(out / "rounds.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["labels"]) for r in rows] == [6, 12]
    assert float(rows[1]["test_forces_rmse"]) < float(rows[0]["test_forces_rmse"])
    assert float(rows[1]["explore_median_uncertainty"]) > 0
    labels = read(out / "labels.extxyz", ":")
    assert [f.info["round"] for f in labels] == [0] * 6 + [1] * 6
    assert all(f.info["source"].startswith("start 0") for f in labels)
    # the labels are the teacher's (extxyz keeps 8 decimals of positions and forces)
    for frame in labels[-2:]:
        expected = frame.copy()
        expected.calc = EMT()
        np.testing.assert_allclose(frame.get_forces(), expected.get_forces(), atol=1e-7)
        np.testing.assert_allclose(frame.get_stress(), expected.get_stress(), atol=1e-7)
    # outputs: a loadable model, the committee, the figure and the card
    calc = NEMPCalculator.from_checkpoint(out / "model.safetensors", device="cpu")
    atoms = copper()
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert sorted(p.name for p in (out / "committee").iterdir()) == [
        "member_0.safetensors",
        "member_1.safetensors",
    ]
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    card = (out / "card.md").read_text()
    assert "EMT" in card and "Spearman" in card and "as fast as the teacher" in card
    # a finished run resumed with a larger budget goes on where it stopped
    assert json.loads((out / "state.json").read_text())["round"] == 2
    assert main(["learn", str(path), "--resume", "--max_rounds", "3"]) == 0
    assert "18 labels in 3 rounds" in capsys.readouterr().out
    with pytest.raises(ValueError, match="cannot resume: committee differ"):
        learn(
            LearnConfig.from_dict({**config(start_file, out).to_dict(), "committee": 3}),
            resume=True,
        )


def test_random_selection_and_convergence_stop(start_file, tmp_path):
    # a huge threshold: nothing is uncertain enough, so the loop stops converged after round 0
    result = learn(config(start_file, tmp_path / "a", uncertainty_threshold=4.0), progress=False)
    assert result.stop_reason.startswith("converged: no explored frame above")
    assert result.labels == 6 and result.rounds == 1
    # random selection ignores the threshold; the test set comes from the teacher's own MD
    result = learn(
        config(
            start_file,
            tmp_path / "b",
            uncertainty_threshold=4.0,
            selection="random",
            test_frames=3,
            test_interval=5,
            test_equilibration=10,
        ),
        progress=False,
    )
    assert result.labels == 12 and result.rounds == 2
    test = read(tmp_path / "b" / "test.extxyz", ":")
    assert [f.info["source"] for f in test] == [f"teacher md 800 K frame {k}" for k in range(3)]
    assert all(row["test_forces_rmse"] > 0 for row in result.history)


# -------------------------------------------------------------------- nothing is ever lost
def test_kill_during_labelling_and_resume_calls_the_teacher_once_per_label(start_file, tmp_path):
    out, count_file = tmp_path / "run", tmp_path / "calls.txt"
    values = config(
        start_file,
        out,
        initial_labels=12,
        max_rounds=1,
        workers=2,
        teacher="learn_teachers:counting_emt",
        teacher_options={"count_file": str(count_file), "delay": 0.4},
    ).to_dict()
    path = tmp_path / "learn.yaml"
    path.write_text(LearnConfig.from_dict(values).to_yaml())
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcalc.cli", "learn", str(path)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    labels = out / "labels.extxyz"
    deadline = time.monotonic() + 120
    while not (labels.exists() and labels.read_text().count("Lattice") >= 3):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "labelling did not start"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # the loop dies; its workers finish their calls
    process.wait()
    process.stderr.close()
    deadline = time.monotonic() + 60
    while True:  # wait until the orphaned workers are gone
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "worker processes did not exit"
        time.sleep(0.1)
    assert len(read(labels, ":")) < 12
    result = learn(LearnConfig.from_dict(values), resume=True, progress=False)
    assert result.labels == 12
    calls = Counter(count_file.read_text().split())
    keys = [structure_key(f) for f in read(labels, ":")]
    assert sorted(calls) == sorted(keys)
    assert set(calls.values()) == {1}


def test_store_repairs_a_file_cut_short(tmp_path):
    store = LabelStore(tmp_path)
    candidates = tag(perturbed_copies([copper()], 3, 0.05, 0.0, seed=0), 0)
    with ThreadPoolExecutor(1) as executor:
        label_candidates(TeacherSpec("emt"), candidates, store, executor, progress=False)
    text = store.path.read_text()
    store.path.write_text(text[: len(text) - 40])  # a kill in the middle of the last append
    repaired = LabelStore(tmp_path)
    assert [f.info["candidate_id"] for f in repaired.frames] == ["r0-0", "r0-1"]
    assert len(read(store.path, ":")) == 2  # the partial frame is gone from the file
    # the cut label is still in the journal only if the loop had not deleted it: here it had,
    # so labelling again calls the teacher for that one structure alone
    with ThreadPoolExecutor(1) as executor:
        assert label_candidates(
            TeacherSpec("emt"), candidates, repaired, executor, progress=False
        ) == (1, 0)
    assert [f.info["candidate_id"] for f in LabelStore(tmp_path).frames] == ["r0-0", "r0-1", "r0-2"]


# ------------------------------------------------------------------------- failing teachers
def test_failing_structures_are_recorded_and_skipped(start_file, tmp_path):
    result = learn(
        config(
            start_file,
            tmp_path / "run",
            teacher="learn_teachers:flaky_emt",
            initial_labels=16,
            max_rounds=1,
            max_failed_fraction=0.9,
        ),
        executor=ThreadPoolExecutor(1),
        progress=False,
    )
    failures = [
        json.loads(line) for line in (tmp_path / "run" / "failed.jsonl").read_text().splitlines()
    ]
    reasons = {f["error"] for f in failures}
    assert any("SCF did not converge" in r for r in reasons)
    assert any("non-finite" in r for r in reasons)
    assert result.failed == len(failures) > 0
    assert result.labels == 16 - len(failures)


def test_a_teacher_that_always_fails_stops_with_its_message(start_file, tmp_path):
    with pytest.raises(RuntimeError, match=r"broken_emt.*licence server unreachable"):
        learn(
            config(start_file, tmp_path / "run", teacher="learn_teachers:broken_emt"),
            executor=ThreadPoolExecutor(1),
            progress=False,
        )


# ------------------------------------------------------------------------------------ Dask
def test_dask_local_cluster_gives_the_labels_of_local_processes(tmp_path):
    pytest.importorskip("distributed", reason="Dask labelling needs pip install 'mlcalc[learn]'")
    candidates = tag(perturbed_copies([copper()], 4, 0.05, 0.02, seed=3), 0)
    stores = {}
    for kind in ("processes", "dask"):
        stores[kind] = LabelStore(tmp_path / kind)
        with open_executor(kind, workers=2) as executor:
            label_candidates(TeacherSpec("emt"), candidates, stores[kind], executor, progress=False)
    by_id = {k: {f.info["candidate_id"]: f for f in s.frames} for k, s in stores.items()}
    assert sorted(by_id["dask"]) == sorted(by_id["processes"]) == [f"r0-{k}" for k in range(4)]
    for key, frame in by_id["processes"].items():
        other = by_id["dask"][key]
        assert frame.info["energy"] == other.info["energy"]
        np.testing.assert_array_equal(frame.arrays["forces"], other.arrays["forces"])
        np.testing.assert_array_equal(frame.info["stress"], other.info["stress"])


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"teacher": "dft-of-the-future"}, ValueError, "unknown teacher"),
        ({"start": "no/such/file.xyz"}, FileNotFoundError, "start file not found"),
        (
            {"labels_per_round": 80},
            ValueError,
            r"labels_per_round \(80\) is larger than max_labels",
        ),
        ({"teacher": "learn_teachers:nonexistent"}, ValueError, "nonexistent"),
        ({"temperature": 300}, ValueError, "did you mean 'temperatures'"),
        ({"uncertainty_threshold": "small"}, ValueError, "uncertainty_threshold must be a num"),
        ({"candidate_pool": 0.5}, ValueError, "candidate_pool must be >= 1"),
        ({"training": {"train_file": "x.xyz"}}, ValueError, "sets train_file itself"),
    ],
)
def test_bad_config_is_refused_before_any_teacher_call(start_file, tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        learn(config(start_file, tmp_path / "run", **change), progress=False)
    assert not (tmp_path / "run" / "labels.extxyz").exists()


def test_a_teacher_without_an_element_of_the_start_is_refused(tmp_path):
    path = tmp_path / "si.xyz"
    write(path, bulk("Si", cubic=True))
    with pytest.raises(ValueError, match=r"(?i)emt.*Si"):
        learn(config(path, tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()


def test_numbers_written_as_text_are_read(start_file, tmp_path):
    values = config(start_file, tmp_path / "run", uncertainty_threshold="1e-3", committee="2")
    assert values.uncertainty_threshold == 0.001 and values.committee == 2


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit):
        main(["learn", "--help"])
    text = capsys.readouterr().out
    for key in ("--teacher", "--temperatures", "--uncertainty_threshold", "--resume"):
        assert key in text


# ------------------------------------------------------------------------------- selection
def test_farthest_point_sampling_spreads_out():
    features = np.array([[0.0], [0.1], [0.2], [5.0], [10.0]])
    assert farthest_points(features, 3, first=0) == [0, 4, 3]


def test_candidate_pool_thins_only_the_most_uncertain_frames():
    """Farthest-point sampling picks diverse frames; with a pool it picks them among the
    ``pool × count`` most uncertain candidates only."""
    frames = []
    for k in range(8):
        atoms = copper()
        atoms.rattle(0.02 + 0.03 * k, seed=k)
        frames.append(atoms)
    # uncertainty falls with the rattle; frames 0-2 are the most uncertain
    run = Trajectory("md", frames, [0.9 - 0.1 * k for k in range(8)])
    everywhere = select([run], 2, 0.05, 3.0, random=False, seed=0)
    pooled = select([run], 2, 0.05, 3.0, random=False, seed=0, pool=1.5)
    uncertainty = [f.info["uncertainty"] for f in pooled]
    assert len(pooled) == 2 and min(uncertainty) >= 0.7 - 1e-12  # among frames 0-2
    assert min(f.info["uncertainty"] for f in everywhere) < 0.7  # reaches beyond them
    assert select([run], 3, 0.05, 3.0, random=False, seed=0, pool=1.0) == frames[:3]


def test_fingerprints_are_invariant_and_tell_structures_apart():
    atoms = copper()
    atoms.rattle(0.1, seed=1)
    moved = atoms.copy()
    moved.positions = moved.positions @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]]).T + 1.3
    moved.set_cell(moved.cell[:] @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]]).T)
    strained = atoms.copy()
    strained.set_cell(atoms.cell * 1.05, scale_atoms=True)
    a, b, c = fingerprints([atoms, moved, strained], cutoff=4.0)
    np.testing.assert_allclose(a, b, atol=1e-10)
    assert np.linalg.norm(a - c) > 0.1


def test_the_copper_example_runs_with_smaller_budgets(tmp_path, monkeypatch):
    # the full example takes minutes (docs/learn.md); here its file, start structure and keys
    repository = TESTS.parent
    monkeypatch.chdir(repository)
    small = {"output_dir": str(tmp_path / "cu"), "committee": 2, "max_rounds": 2,
             "md_steps": 20, "test_frames": 2, "test_equilibration": 10, "workers": 1,
             "model": TINY_MODEL, "training": {"epochs": 2}}  # fmt: skip
    result = learn(LearnConfig.from_yaml("examples/learn/copper-emt.yaml", small), progress=False)
    assert result.rounds == 2 and result.labels > 16  # 16 in round 0, then what MD found
    assert "test_forces_rmse" in result.history[-1]
