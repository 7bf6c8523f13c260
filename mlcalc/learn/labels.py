"""The run's labels: an extxyz file that only grows, and a journal that loses nothing.

A teacher call is the expensive part of a run, so every finished call is kept twice until it is
safe: the worker that made it writes its result to ``journal/<candidate id>.json`` (atomically,
before it returns), and the loop appends the labelled frame to ``labels.extxyz`` (one write,
flushed and synced) and only then deletes the journal entry. A run killed at any point loses at
most calls that had not finished; :meth:`LabelStore.recover` puts journalled results that did
not reach the file into it. Failed calls go to ``failed.jsonl`` with their reason, so that they
are not repeated either.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from mlcalc.atomic import write_text_atomic

LABELS_FILE = "labels.extxyz"
FAILED_FILE = "failed.jsonl"
JOURNAL_DIR = "journal"
#: ``atoms.info`` keys that describe where a label came from.
ID_KEY, ROUND_KEY, SOURCE_KEY = "candidate_id", "round", "source"


@dataclass
class Label:
    """A teacher's result for one candidate: energy (eV), forces ``[N, 3]`` (eV/Å), stress
    ``[6]`` (eV/Å³, Voigt; periodic cells whose teacher gives one), or the failure reason."""

    candidate_id: str
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_json(self) -> str:
        values: dict[str, Any] = {"candidate_id": self.candidate_id, "seconds": self.seconds}
        if self.failed:
            values["error"] = self.error
        else:
            values["energy"] = self.energy
            values["forces"] = np.asarray(self.forces).tolist()
            if self.stress is not None:
                values["stress"] = np.asarray(self.stress).tolist()
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> Label:
        values = json.loads(text)
        return cls(
            candidate_id=values["candidate_id"],
            energy=values.get("energy"),
            forces=None if "forces" not in values else np.array(values["forces"]),
            stress=None if values.get("stress") is None else np.array(values["stress"]),
            error=values.get("error"),
            seconds=float(values.get("seconds", 0.0)),
        )


def labelled_frame(candidate: Atoms, label: Label) -> Atoms:
    """``candidate`` (with its id, round and source in ``info``) carrying the label as
    ``info["energy"]``, ``arrays["forces"]`` and ``info["stress"]``: what ``mlcalc train``
    reads."""
    frame = Atoms(
        numbers=candidate.numbers,
        positions=candidate.positions,
        cell=candidate.cell,
        pbc=candidate.pbc,
        info={k: candidate.info[k] for k in (ID_KEY, ROUND_KEY, SOURCE_KEY) if k in candidate.info},
    )
    frame.info["energy"] = float(label.energy)  # type: ignore[arg-type]
    frame.arrays["forces"] = np.asarray(label.forces, dtype=np.float64)
    if label.stress is not None:
        frame.info["stress"] = np.asarray(label.stress, dtype=np.float64)
    frame.info["teacher_seconds"] = round(label.seconds, 4)
    return frame


def _complete_frames_length(text: str) -> tuple[int, int]:
    """(number of complete extxyz frames, characters they take) at the start of ``text``."""
    lines = text.splitlines(keepends=True)
    frames, position, line = 0, 0, 0
    while line < len(lines):
        try:
            count = int(lines[line].strip())
        except ValueError:
            break
        end = line + 2 + count
        if end > len(lines) or not lines[end - 1].endswith("\n"):
            break
        position += sum(len(x) for x in lines[line:end])
        frames, line = frames + 1, end
    return frames, position


class LabelStore:
    """The labels of a run in ``folder``: ``labels.extxyz``, ``failed.jsonl`` and the journal.

    Opening a store repairs a file cut short by a kill (a partial last frame or line is dropped;
    its result is still in the journal).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LABELS_FILE
        self.failed_path = self.folder / FAILED_FILE
        self.journal = self.folder / JOURNAL_DIR
        self.journal.mkdir(parents=True, exist_ok=True)
        self.frames: list[Atoms] = []
        self.failures: dict[str, str] = {}
        if self.path.exists():
            text = self.path.read_text()
            count, length = _complete_frames_length(text)
            if length < len(text):
                self._truncate(self.path, length)
            if count:
                self.frames = list(ase.io.read(io.StringIO(text[:length]), ":", format="extxyz"))
        if self.failed_path.exists():
            text = self.failed_path.read_text()
            keep = text[: text.rfind("\n") + 1]
            if len(keep) < len(text):
                self._truncate(self.failed_path, len(keep))
            for line in keep.splitlines():
                entry = json.loads(line)
                self.failures[entry["candidate_id"]] = entry["error"]
        self.done = {str(f.info[ID_KEY]) for f in self.frames} | set(self.failures)

    @staticmethod
    def _truncate(path: Path, length: int) -> None:
        with open(path, "r+") as stream:
            stream.truncate(length)

    @staticmethod
    def _append(path: Path, text: str) -> None:
        with open(path, "a") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())

    def add(self, candidate: Atoms, label: Label) -> None:
        """Keep ``label`` of ``candidate`` (in the data file, or as a failure), then drop its
        journal entry."""
        if label.candidate_id in self.done:
            return
        if label.failed:
            entry = {"candidate_id": label.candidate_id, "error": label.error}
            entry[ROUND_KEY] = int(candidate.info.get(ROUND_KEY, -1))
            entry[SOURCE_KEY] = str(candidate.info.get(SOURCE_KEY, ""))
            self._append(self.failed_path, json.dumps(entry) + "\n")
            self.failures[label.candidate_id] = str(label.error)
        else:
            frame = labelled_frame(candidate, label)
            text = io.StringIO()
            ase.io.write(text, frame, format="extxyz")
            self._append(self.path, text.getvalue())
            self.frames.append(frame)
        self.done.add(label.candidate_id)
        self.journal_path(label.candidate_id).unlink(missing_ok=True)

    def journal_path(self, candidate_id: str) -> Path:
        return self.journal / f"{candidate_id}.json"

    def recover(self, candidates: Iterable[Atoms]) -> int:
        """Move journalled results of ``candidates`` into the store; returns how many."""
        moved = 0
        for candidate in candidates:
            key = str(candidate.info[ID_KEY])
            path = self.journal_path(key)
            if key not in self.done and path.exists():
                self.add(candidate, Label.from_json(path.read_text()))
                moved += 1
        return moved

    def labelled_in_round(self, round_index: int) -> int:
        return sum(1 for f in self.frames if int(f.info.get(ROUND_KEY, -1)) == round_index)


def write_journal(path: str | os.PathLike, label: Label) -> None:
    """Write ``label`` to its journal file atomically (workers call this before returning)."""
    write_text_atomic(path, label.to_json())
