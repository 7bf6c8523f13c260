"""The active-learning loop: label, train a committee, explore with it, select, repeat.

Every stage leaves the run resumable (``state.json``, written atomically after each stage):

* ``select``: round 0 perturbs the start structures; later rounds explore with the previous
  round's committee and pick frames (:mod:`mlcalc.learn.explore`); the candidates are written
  to ``round_<r>/candidates.extxyz`` before any teacher call;
* ``label``: the teacher labels them (:mod:`mlcalc.learn.labelling`, :mod:`mlcalc.learn.labels`);
* ``train``: each member trains on all labels (``round_<r>/member_<k>``; a member killed
  mid-training continues from its last epoch);
* ``score``: the committee is scored, ``committee/``, ``model.safetensors``, ``rounds.csv``,
  the figure and the card are written.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from concurrent.futures import Executor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import ase.io

from mlcalc.atomic import atomic_path, write_text_atomic
from mlcalc.committee import CommitteeCalculator
from mlcalc.learn.config import LearnConfig
from mlcalc.learn.explore import explore, perturbed_copies, read_structures_of, select, tag
from mlcalc.learn.labelling import label_candidates, open_executor, write_teacher_test_set
from mlcalc.learn.labels import LabelStore
from mlcalc.learn.report import score_committee, write_outputs
from mlcalc.learn.teachers import TeacherSpec
from mlcalc.progress import progress_bar
from mlcalc.training import Trainer

STATE_FILE = "state.json"
STAGES = ("select", "label", "train", "score")


@dataclass
class LearnResult:
    """What a finished (or stopped) run produced."""

    output_dir: Path
    rounds: int
    labels: int
    failed: int
    stop_reason: str
    model_path: Path
    committee_paths: list[Path]
    history: list[dict[str, Any]]


class ActiveLearning:
    """One ``mlcalc learn`` run; :meth:`run` returns a :class:`LearnResult`.

    Args:
        config: the run's configuration.
        resume: continue the run in ``output_dir`` (no finished teacher call is repeated).
        executor: label through this executor instead of the one ``config`` describes.
        log: where round summaries go (default stdout); progress bars go to stderr.
        progress: bars on stderr: ``True``, ``False``, ``None`` (when stderr is a terminal).
    """

    def __init__(
        self,
        config: LearnConfig,
        resume: bool = False,
        executor: Executor | None = None,
        log: TextIO | None = None,
        progress: bool | None = None,
    ) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.state_path = self.output_dir / STATE_FILE
        if resume and not self.state_path.is_file():
            raise FileNotFoundError(
                f"nothing to resume: {self.state_path} does not exist (start without --resume)"
            )
        if not resume and self.state_path.exists():
            raise FileExistsError(
                f"{self.output_dir} already holds a learn run; continue it with --resume or "
                "choose another output_dir"
            )
        self.teacher = TeacherSpec(config.teacher, dict(config.teacher_options))  # type: ignore[arg-type]
        self.starts = read_structures_of(config.start_files())
        elements = sorted({s for atoms in self.starts for s in atoms.get_chemical_symbols()})
        self.teacher.check(elements)  # before any teacher call
        self.resume = resume
        self.executor = executor
        self.log = log if log is not None else sys.stdout
        self.progress = progress

    # ------------------------------------------------------------------------------ state
    def _load_state(self) -> dict[str, Any]:
        if self.resume:
            state = json.loads(self.state_path.read_text())
            saved = LearnConfig.from_dict(state["config"])
            free = {
                "max_labels",
                "max_rounds",
                "max_time",
                "workers",
                "executor",
                "scheduler_address",
                "worker_threads",
                "device",
                "threads",
                "uncertainty_target",
                "max_failed_fraction",
                "test_file",
            }
            changed = sorted(
                k
                for k, v in self.config.to_dict().items()
                if k not in free and v != saved.to_dict()[k]
            )
            if changed:
                raise ValueError(
                    f"cannot resume: {', '.join(changed)} differ from the run in "
                    f"{self.output_dir}; only {', '.join(sorted(free))} may change"
                )
            state["stop_reason"] = None  # a stopped run goes on where the new budgets allow
            return state
        return {
            "round": 0,
            "stage": "select",
            "elapsed_s": 0.0,
            "history": [],
            "members": {},
            "exploration": {},
            "stop_reason": None,
        }

    def _save(self, state: dict[str, Any]) -> None:
        state["config"] = self.config.to_dict()
        state["elapsed_s"] = self._elapsed_base + time.perf_counter() - self._started
        write_text_atomic(self.state_path, json.dumps(state, indent=1))

    def _say(self, text: str) -> None:
        print(text, file=self.log, flush=True)

    # ------------------------------------------------------------------------------- run
    def run(self) -> LearnResult:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        self._started, self._elapsed_base = time.perf_counter(), float(state["elapsed_s"])
        if not self.resume:
            write_text_atomic(self.output_dir / "config.yaml", self.config.to_yaml())
            self._save(state)
        store = LabelStore(self.output_dir)
        context = (
            nullcontext(self.executor)
            if self.executor is not None
            else open_executor(
                self.config.executor,
                self.config.workers,
                self.config.scheduler_address,
                self.config.worker_threads,
            )
        )
        with context as executor:
            if self.test_file is not None and not self.test_file.exists():
                self._teacher_test_set(executor)
            while state["stop_reason"] is None:
                stage = state["stage"]
                if stage == "select":
                    self._select(state, store)
                elif stage == "label":
                    self._label(state, store, executor)
                elif stage == "train":
                    self._train(state, store)
                else:
                    self._score(state, store)
                self._save(state)
        self._say(f"stopped: {state['stop_reason']}")
        last = state["round"] - 1 if state["stage"] == "select" else state["round"]
        return LearnResult(
            output_dir=self.output_dir,
            rounds=last + 1,
            labels=len(store.frames),
            failed=len(store.failures),
            stop_reason=state["stop_reason"],
            model_path=self.output_dir / "model.safetensors",
            committee_paths=[Path(p) for p in state["members"].get(str(last), [])],
            history=state["history"],
        )

    @property
    def test_file(self) -> Path | None:
        """The frames each round is scored on: ``test_file``, or the teacher's MD frames."""
        if self.config.test_file is not None:
            return Path(self.config.test_file)
        return self.output_dir / "test.extxyz" if self.config.test_frames else None

    def _teacher_test_set(self, executor: Executor) -> None:
        config = self.config
        count = write_teacher_test_set(
            self.test_file,
            self.teacher,
            self.starts,
            config.temperatures,
            config.test_frames,
            config.test_interval,
            config.test_equilibration,
            config.timestep_fs,
            config.seed,
            executor,
            self.progress,
        )
        self._say(f"test set: {count} frames of the teacher's MD in {self.test_file}")

    def round_dir(self, round_index: int) -> Path:
        return self.output_dir / f"round_{round_index}"

    def _stop_reason(self, state: dict[str, Any], store: LabelStore) -> str | None:
        config, r = self.config, state["round"]
        if r == 0:
            return None
        if len(store.frames) >= config.max_labels:
            return f"max_labels {config.max_labels} reached"
        if r >= config.max_rounds:
            return f"max_rounds {config.max_rounds} reached"
        budget = config.max_time_seconds()
        elapsed = self._elapsed_base + time.perf_counter() - self._started
        if budget is not None and elapsed >= budget:
            return f"max_time {config.max_time} reached"
        return None

    def _select(self, state: dict[str, Any], store: LabelStore) -> None:
        config, r = self.config, state["round"]
        reason = self._stop_reason(state, store)
        if reason is not None:
            state["stop_reason"] = reason
            return
        room = config.max_labels - len(store.frames)
        if r == 0:
            candidates = perturbed_copies(
                self.starts,
                min(config.round0_labels, room),
                config.rattle,
                config.strain,
                config.seed,
            )
            summary: dict[str, Any] = {}
        else:
            committee = CommitteeCalculator.from_checkpoints(
                state["members"][str(r - 1)],
                device=config.device,
                dtype=config.dtype,
                skin=1.0,
            )
            runs = explore(
                progress_bar(
                    self.starts, desc=f"explore round {r}", unit="starts", enabled=self.progress
                ),
                committee,
                config.temperatures,
                config.pressures,
                config.md_steps,
                config.timestep_fs,
                config.sample_interval,
                config.uncertainty_stop,
                config.seed + r,
            )
            sigmas = sorted(u for run in runs for u in run.uncertainty)
            median = sigmas[len(sigmas) // 2] if sigmas else float("inf")
            stopped = sum(run.ended != "steps" for run in runs)
            summary = {
                "explored_frames": len(sigmas),
                "explore_median_uncertainty": median,
                "explore_stopped_runs": stopped,
                "explore_runs": len(runs),
            }
            state["exploration"][str(r)] = summary
            target = config.uncertainty_target
            if target is not None and median < target and stopped == 0:
                state["stop_reason"] = (
                    f"converged: median force uncertainty of fresh exploration {median:.4f} "
                    f"eV/Å < uncertainty_target {target}"
                )
                return
            candidates = select(
                runs,
                min(config.labels_per_round, room),
                config.uncertainty_threshold,
                committee.models[0].cutoff,
                config.selection == "random",
                config.seed + r,
                config.candidate_pool,
            )
            if not candidates:
                state["stop_reason"] = (
                    f"converged: no explored frame above uncertainty_threshold "
                    f"{config.uncertainty_threshold} eV/Å"
                )
                return
            self._say(
                f"round {r}: explored {len(sigmas)} frames in {len(runs)} runs ({stopped} "
                f"stopped at uncertainty_stop), median uncertainty {median:.4f} eV/Å; "
                f"{len(candidates)} selected"
            )
        with atomic_path(self.round_dir(r) / "candidates.extxyz") as temporary:
            ase.io.write(temporary, tag(candidates, r), format="extxyz")
        state["stage"] = "label"

    def _label(self, state: dict[str, Any], store: LabelStore, executor: Executor) -> None:
        r = state["round"]
        candidates = ase.io.read(self.round_dir(r) / "candidates.extxyz", ":", format="extxyz")
        labelled, failed = label_candidates(
            self.teacher,
            candidates,
            store,
            executor,
            self.config.max_failed_fraction,
            self.progress,
        )
        self._say(
            f"round {r}: {labelled} labelled, {failed} failed ({len(store.frames)} labels in all)"
        )
        state["stage"] = "train"

    def _train(self, state: dict[str, Any], store: LabelStore) -> None:
        config, r = self.config, state["round"]
        trained = state.setdefault("trained", {}).setdefault(str(r), {})
        previous = state["members"].get(str(r - 1))
        bar = progress_bar(
            desc=f"train round {r}", unit="members", total=config.committee, enabled=self.progress
        )
        with bar:
            for k in range(config.committee):
                if str(k) in trained:
                    bar.update(1)
                    continue
                folder = self.round_dir(r) / f"member_{k}"
                member = config.member_config(
                    k, store.path, previous[k] if previous else None, folder
                )
                resume = (folder / "training_state.pt").exists()
                with open(self.round_dir(r) / f"member_{k}.log", "a") as log:
                    result = Trainer(member, resume=resume, log=log).run()
                trained[str(k)] = {
                    "path": str(result.model_path),
                    "valid_forces_rmse": result.valid_errors.get("forces_rmse"),
                    "valid_energy_rmse": result.valid_errors.get("energy_rmse"),
                    "epochs": result.epochs,
                }
                self._save(state)
                bar.update(1)
        state["members"][str(r)] = [trained[str(k)]["path"] for k in range(config.committee)]
        state["stage"] = "score"

    def _score(self, state: dict[str, Any], store: LabelStore) -> None:
        config, r = self.config, state["round"]
        trained = state["trained"][str(r)]
        members = [trained[str(k)] for k in range(config.committee)]
        errors = [m["valid_forces_rmse"] for m in members]  # None: no validation forces
        best = min(range(len(members)), key=lambda k: math.inf if errors[k] is None else errors[k])
        known = [error for error in errors if error is not None]
        committee_dir = self.output_dir / "committee"
        for k, member in enumerate(members):
            with atomic_path(committee_dir / f"member_{k}.safetensors") as temporary:
                shutil.copyfile(member["path"], temporary)
        with atomic_path(self.output_dir / "model.safetensors") as temporary:
            shutil.copyfile(members[best]["path"], temporary)
        row: dict[str, Any] = {
            "round": r,
            "labels": len(store.frames),
            "new_labels": store.labelled_in_round(r),
            "failed": len(store.failures),
            **state["exploration"].get(str(r), {}),
            "valid_forces_rmse": sum(known) / len(known) if known else None,
            "student_member": best,
            "elapsed_s": self._elapsed_base + time.perf_counter() - self._started,
        }
        if self.test_file is not None:
            row.update(
                score_committee(
                    state["members"][str(r)],
                    members[best]["path"],
                    str(self.test_file),
                    config.device,
                    config.dtype,
                )
            )
        state["history"].append(row)
        self._say(
            f"round {r}: "
            + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if k != "round"
            )
        )
        write_outputs(
            self.output_dir, self.config, self.teacher, state["history"], store, self.starts[0]
        )
        state["round"], state["stage"] = r + 1, "select"


def learn(
    config: LearnConfig,
    resume: bool = False,
    executor: Executor | None = None,
    log: TextIO | None = None,
    progress: bool | None = None,
) -> LearnResult:
    """Run (or with ``resume`` continue) the active-learning loop of ``config``."""
    return ActiveLearning(config, resume, executor, log, progress).run()
