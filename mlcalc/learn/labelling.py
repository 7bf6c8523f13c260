"""Teacher calls through a :class:`concurrent.futures.Executor`: local processes, a Dask cluster,
or any executor a caller passes (Parsl, submitit...). Nothing here schedules work itself.

Each worker builds the teacher once (:func:`~mlcalc.learn.teachers.cached_teacher`) and writes
its result to the run's journal before returning (:mod:`mlcalc.learn.labels`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError

from mlcalc.atomic import atomic_path
from mlcalc.learn.labels import ID_KEY, Label, LabelStore, write_journal
from mlcalc.learn.teachers import TeacherSpec, cached_teacher
from mlcalc.progress import progress_bar


def label_structure(teacher: TeacherSpec, candidate: Atoms, journal: str | None) -> Label:
    """Call the teacher on ``candidate``: energy, forces and (fully periodic cells, where the
    teacher has it) stress. Any exception or non-finite value becomes a failed :class:`Label`
    with the reason. With ``journal`` (a file path) the result is written there first."""
    _BUSY.set()
    try:
        return _label(teacher, candidate, journal)
    finally:
        _BUSY.clear()


def _label(teacher: TeacherSpec, candidate: Atoms, journal: str | None) -> Label:
    key = str(candidate.info[ID_KEY])
    atoms = candidate.copy()
    started = time.perf_counter()
    try:
        atoms.calc = cached_teacher(teacher)
        energy = float(atoms.get_potential_energy())
        forces = np.array(atoms.get_forces(), dtype=np.float64)
        stress = None
        if atoms.pbc.all():
            with contextlib.suppress(PropertyNotImplementedError):
                stress = np.array(atoms.get_stress(voigt=True), dtype=np.float64)
        values = [np.array([energy]), forces] + ([stress] if stress is not None else [])
        if not all(np.all(np.isfinite(v)) for v in values):
            raise FloatingPointError("the teacher returned non-finite energy, forces or stress")
        label = Label(key, energy, forces, stress, seconds=time.perf_counter() - started)
    except Exception as error:  # a teacher may raise anything; the loop records it
        message = f"{type(error).__name__}: {error}".strip()
        label = Label(key, error=message, seconds=time.perf_counter() - started)
    if journal is not None:
        write_journal(journal, label)
    return label


#: Set while this worker runs a teacher call (and writes its journal entry).
_BUSY = threading.Event()


def _exit_when_orphaned(parent: int) -> None:
    """A worker's watchdog: once the loop's process is gone (killed), leave as soon as no
    teacher call is running, so a finished call is always journalled and none is cut off
    after it counted."""
    while True:
        time.sleep(0.2)
        if os.getppid() != parent and not _BUSY.is_set():
            os._exit(0)


def _start_worker(threads: int) -> None:
    """Worker start-up: OpenMP/BLAS teachers (xtb) use ``threads`` threads, set before they
    load (spinning OpenMP threads on shared cores slow small calls down many times); and the
    watchdog that ends the worker when the loop was killed."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def langevin_frames(
    start: Atoms,
    calculator: Calculator,
    temperature: float,
    frames: int,
    interval: int,
    equilibration: int,
    timestep_fs: float,
    seed: int,
) -> list[Atoms]:
    """``frames`` structures of Langevin MD of ``start`` by ``calculator`` at ``temperature``
    (K; friction 0.01/fs), one every ``interval`` steps after ``equilibration`` steps, each
    carrying the calculator's energy, forces and (fully periodic cells) stress as
    ``mlcalc train`` reads them."""
    from ase import units
    from ase.md import Langevin, thermalize_momenta

    atoms = start.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature,
        friction=0.01 / units.fs,
        fixcm=False,
        rng=rng,
    )
    dynamics.run(equilibration)
    sampled = []
    for k in range(frames):
        dynamics.run(interval)
        frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        frame.info["energy"] = float(atoms.get_potential_energy())
        frame.arrays["forces"] = np.array(atoms.get_forces())
        if atoms.pbc.all():
            with contextlib.suppress(PropertyNotImplementedError):
                frame.info["stress"] = np.array(atoms.get_stress(voigt=True))
        frame.info["source"] = f"md {temperature:g} K frame {k}"
        sampled.append(frame)
    return sampled


def teacher_md(
    teacher: TeacherSpec,
    start: Atoms,
    temperature: float,
    frames: int,
    interval: int,
    equilibration: int,
    timestep_fs: float,
    seed: int,
) -> list[Atoms]:
    """:func:`langevin_frames` of the teacher (built once per worker), labelled by it."""
    sampled = langevin_frames(
        start,
        cached_teacher(teacher),
        temperature,
        frames,
        interval,
        equilibration,
        timestep_fs,
        seed,
    )
    for frame in sampled:
        frame.info["source"] = f"teacher {frame.info['source']}"
    return sampled


def write_teacher_test_set(
    path: Path,
    teacher: TeacherSpec,
    starts: Sequence[Atoms],
    temperatures: Sequence[float],
    frames: int,
    interval: int,
    equilibration: int,
    timestep_fs: float,
    seed: int,
    executor: Executor,
    progress: bool | None = None,
) -> int:
    """Write :func:`teacher_md` frames of every start at every temperature (the runs in
    parallel on the executor's workers) to ``path`` atomically; returns how many."""
    futures = [
        executor.submit(
            teacher_md,
            teacher,
            start,
            temperature,
            frames,
            interval,
            equilibration,
            timestep_fs,
            seed + 7919 * (s + 1) + int(temperature),
        )
        for s, start in enumerate(starts)
        for temperature in temperatures
    ]
    labelled: list[Atoms] = []
    with progress_bar(
        desc="teacher md (test set)", unit="runs", total=len(futures), enabled=progress
    ) as bar:
        for future in futures:
            labelled.extend(future.result())
            bar.update(1)
    with atomic_path(path) as temporary:
        ase.io.write(temporary, labelled, format="extxyz")
    return len(labelled)


@contextlib.contextmanager
def open_executor(
    kind: str, workers: int, scheduler_address: str | None = None, threads: int = 1
) -> Iterator[Executor]:
    """``"processes"``: a pool of ``workers`` local processes (spawned), each teacher on
    ``threads`` OpenMP threads; ``"dask"``: the executor of a Dask client at
    ``scheduler_address`` (its workers as they were started), or of a local cluster of
    ``workers`` worker processes of ``threads`` threads."""
    if kind == "processes":
        context = multiprocessing.get_context("spawn")  # safe with torch threads in the parent
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(threads,),
        ) as pool:
            yield pool
        return
    if kind != "dask":
        raise ValueError(f"executor must be 'processes' or 'dask', got {kind!r}")
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ValueError(
            "executor: dask needs the distributed package: pip install 'mlcalc[learn]'"
        ) from error
    with contextlib.ExitStack() as stack:
        if scheduler_address is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    env={"OMP_NUM_THREADS": str(threads)},
                    processes=True,
                    dashboard_address=None,
                )
            )
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler_address))
        yield client.get_executor(pure=False)


class MostlyFailedError(RuntimeError):
    """Most of a round's teacher calls failed."""


def label_candidates(
    teacher: TeacherSpec,
    candidates: Sequence[Atoms],
    store: LabelStore,
    executor: Executor,
    max_failed_fraction: float = 0.5,
    progress: bool | None = None,
) -> tuple[int, int]:
    """Label the ``candidates`` not yet in ``store`` through ``executor``; each result goes into
    the store as it arrives. Returns (labelled, failed) counts of this call.

    Raises:
        MostlyFailedError: more than ``max_failed_fraction`` of the candidates failed (after
            all of them were tried); the message names the teacher and its first error.
    """
    store.recover(candidates)
    pending = [c for c in candidates if str(c.info[ID_KEY]) not in store.done]
    by_id = {str(c.info[ID_KEY]): c for c in pending}
    labelled = failed = 0
    if pending:
        futures: list[Future[Label]] = [
            executor.submit(
                label_structure, teacher, c, str(store.journal_path(str(c.info[ID_KEY])))
            )
            for c in pending
        ]
        with progress_bar(
            desc="label", unit="structures", total=len(futures), enabled=progress
        ) as bar:
            for future in as_completed(futures):
                label = future.result()
                store.add(by_id[label.candidate_id], label)
                failed += label.failed
                labelled += not label.failed
                bar.update(1)
    ids = [str(c.info[ID_KEY]) for c in candidates]
    errors = [store.failures[k] for k in ids if k in store.failures]
    if ids and len(errors) > max_failed_fraction * len(ids):
        raise MostlyFailedError(
            f"teacher {teacher.describe()} failed on {len(errors)} of {len(ids)} structures of "
            f"this round (more than max_failed_fraction {max_failed_fraction}); first error: "
            f"{errors[0]} (all reasons: {Path(store.failed_path)})"
        )
    return labelled, failed
