"""Our models side by side with MACE, NequIP and SevenNet: CPU time of E + F + S per MD step.

Usage (with the project's venv python; the peers' venvs are set up on first use)::

    python bench/peers.py                                   # everything: several hours
    python bench/peers.py --sizes 192 --repeats 1 --models nemp-small sevenn
    python bench/peers.py --setup-only                      # only install the peer venvs
    python bench/peers.py --markdown --json peers.json      # table for docs/benchmarks.md

Models: ours from ``bench/speed.py`` (``MODELS``) and six peers, all randomly initialised for
H and O with a 5 Å cutoff, each called through its own ASE calculator:

- ``mace-128``: MACE (mace-torch) ScaleShiftMACE, hidden 128x0e+128x1o, 2 interactions,
  correlation 3, max_ell 3, radial MLP [64, 64, 64];
- ``mace-64``: the same with hidden 64x0e+64x1o;
- ``nequip``: NequIP 0.19 ``NequIPGNNModel`` defaults (32 features, l_max 1, 4 layers);
- ``sevenn``: SevenNet ``model_defaults`` (32 channels, lmax 1, 3 convolutions);
- ``nequip-l2``, ``sevenn-l2``: the same two with l_max 2 (the larger sizes of the
  accuracy–speed front, ``bench/front.py``).

The peers pin other e3nn versions than ours, so each lives in its own venv under ``--cache``
(default ``~/.cache/mlcalc/bench-peers``): ``venv-mace``, ``venv-nequip``, ``venv-sevenn``,
each with ``torch==2.13.0`` installed first (the CPU wheel; unpinned, pip would pull a CUDA
build of several GB), then the pinned peer package. A venv that exists and imports is reused;
``--skip-setup`` reports a missing one instead of installing it (and exits 1 after the table).
Peer timing runs in ``bench/_peer_worker.py`` under the peer venv's python, on the same water
box that ``mlcalc.structures.water_box`` builds (passed as an extxyz file); ours runs in
``bench/speed.py``'s worker. Both use the same protocol: every atom displaced by N(0, 0.01 Å),
one ``calc.calculate(atoms, ["energy", "forces", "stress"], all_changes)``, the first step as
warm-up, the median of ``--repeats`` timed steps after it (fewer when ``--budget-s`` runs out).

Each (model, dtype, size) is its own subprocess. The parent watches its resident memory in
``/proc`` and kills it above ``--max-rss-gb`` (the child also caps its address space there);
its peak RSS is the child's ``ru_maxrss`` from ``os.wait4``. A bigger size of a model is
skipped, with the reason in the table, once a smaller one did not finish, took longer than
``--budget-s``, or predicts (scaled linearly in atoms) more than the budget or the memory guard.
A child is killed after ``3 × --budget-s + 120`` s. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import speed  # noqa: E402  (bench/speed.py: our models and their worker)
from _peer_worker import PEER_CONFIGS  # noqa: E402  (stdlib-only at import)

WORKER = HERE / "_peer_worker.py"
OURS: list[str] = list(speed.MODELS)
PEERS: list[str] = list(PEER_CONFIGS)
#: Peers whose ASE calculator runs in float32 only, with the reason (their float64 rows are
#: skipped rather than failed).
FLOAT32_ONLY = {
    model: "SevenNet's ASE calculator runs float32 only (sevenn.util.dtype_correct casts "
    "its inputs to float32)"
    for model, (package, _) in PEER_CONFIGS.items()
    if package == "sevenn"
}
PEER_DESCRIPTIONS = {
    "mace-128": "MACE 128x0e+128x1o, 2 interactions, correlation 3",
    "mace-64": "MACE 64x0e+64x1o, 2 interactions, correlation 3",
    "nequip": "NequIP 32 features, l_max 1, 4 layers",
    "nequip-l2": "NequIP 32 features, l_max 2, 4 layers",
    "sevenn": "SevenNet 32 channels, lmax 1, 3 convolutions",
    "sevenn-l2": "SevenNet 32 channels, lmax 2, 3 convolutions",
}
#: torch for every peer venv: the CPU wheel that lies on this kind of machine's disk.
TORCH_PIN = "torch==2.13.0"
#: Peer package key → what pip installs into its venv after torch (versions pinned).
PEER_PACKAGES: dict[str, list[str]] = {
    "mace": ["mace-torch==0.3.16", "ase", "matscipy"],
    "nequip": ["nequip==0.19.1", "ase", "matscipy"],
    "sevenn": ["sevenn==0.13.0", "ase"],
}
DEFAULT_CACHE = Path("~/.cache/mlcalc/bench-peers")
INSTALL_TIMEOUT_S = 3600
#: Share of the machine's CPU used by other processes above which a row is flagged as noisy.
BUSY = 0.10
MEMORY_ERRORS = (
    "can't allocate memory",
    "MemoryError",
    "std::bad_alloc",
    "Cannot allocate",
    "failed to map segment",
)


# ---------------------------------------------------------------------------------------------
# Peer venvs


def venv_python(cache: Path, package: str) -> Path:
    return cache / f"venv-{package}" / "bin" / "python"


def probe(python: Path, package: str) -> dict[str, str]:
    """Import the peer package with ``python`` and return its versions; raises RuntimeError."""
    proc = subprocess.run(
        [str(python), str(WORKER), "--versions", package],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(1),
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"import failed: {last_line(proc.stderr)}")
    return json.loads(lines[-1])


def install(cache: Path, package: str, log: Callable[[str], None]) -> None:
    """Create ``venv-PACKAGE`` under ``cache`` and pip-install torch, then the peer package."""
    venv = cache / f"venv-{package}"
    logfile = cache / "logs" / f"install-{package}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    python = venv_python(cache, package)
    steps = []
    if not python.exists() or subprocess.run([str(python), "-c", "pass"]).returncode != 0:
        steps.append([sys.executable, "-m", "venv", "--clear", str(venv)])
    pip = [str(python), "-m", "pip", "install", "--progress-bar", "off"]
    steps += [[*pip, TORCH_PIN], [*pip, TORCH_PIN, *PEER_PACKAGES[package]]]
    with logfile.open("a") as out:
        for command in steps:
            shown = " ".join(["pip install", *command[6:]] if "pip" in command else command[1:])
            log(f"setup {package}: {shown} (log: {logfile})")
            out.write(f"\n$ {' '.join(command)}\n")
            out.flush()
            code = subprocess.call(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S
            )
            if code != 0:
                tail = last_line(logfile.read_text(errors="replace"))
                raise RuntimeError(f"`{shown}` exited {code}: {tail}")
        freeze = subprocess.run(
            [str(python), "-m", "pip", "freeze"],
            capture_output=True,
            text=True,
        )
    (venv / "mlcalc-pip-freeze.txt").write_text(freeze.stdout)


def setup_peer(
    cache: Path, package: str, skip_setup: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """``{"python": ..., "versions": {...}}``, or ``{"error": why}`` when it cannot be used."""
    python = venv_python(cache, package)
    reason = f"no venv at {python.parent.parent}"
    if python.exists():
        try:
            return {"python": str(python), "versions": probe(python, package)}
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            reason = f"{python.parent.parent} does not import {package}: {error}"
    if skip_setup:
        return {"error": f"setup skipped (--skip-setup): {reason}"}
    try:
        install(cache, package, log)
        versions = probe(python, package)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        return {"error": f"setup failed: {error}"}
    (python.parent.parent / "mlcalc-versions.json").write_text(json.dumps(versions, indent=1))
    return {"python": str(python), "versions": versions}


# ---------------------------------------------------------------------------------------------
# One configuration in a watched subprocess


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:300]


#: ``--allocator`` choices → how a child's environment selects it. ``jemalloc`` is preloaded
#: with page decay off: freed pages stay with the process and are reused in the next step
#: (glibc's heap keeps them too, but fragmented: at 12,288 atoms two thirds of its resident
#: heap are free blocks it cannot reuse). Applied to every child, ours and the peers' alike.
ALLOCATORS: dict[str, dict[str, str]] = {
    "glibc": {},
    "jemalloc": {
        "LD_PRELOAD": "libjemalloc.so.2",
        "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
    },
}


def child_env(threads: int, allocator: str = "glibc") -> dict[str, str]:
    """The environment of a child: ``threads`` for every BLAS/OpenMP pool, and the memory
    ``allocator`` (a key of :data:`ALLOCATORS`; ``jemalloc`` must be installed, e.g. Debian's
    ``libjemalloc2``)."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    for settings in ALLOCATORS.values():  # an allocator inherited from the shell is not asked for
        for name in settings:
            env.pop(name, None)
    env.update(ALLOCATORS[allocator])
    return env


def allocator_problem(allocator: str) -> str:
    """Why ``allocator`` cannot be preloaded here ("" when it can)."""
    library = ALLOCATORS[allocator].get("LD_PRELOAD")
    if library is None:
        return ""
    # a preload the loader cannot find is only a warning on stderr: look at what a child maps
    show = f"print(any({library!r} in line for line in open('/proc/self/maps')))"
    env = child_env(1, allocator)
    child = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True)
    if child.stdout.strip() != "True":
        why = last_line(child.stderr) if child.stderr.strip() else "not mapped"
        return f"--allocator {allocator}: {library} is not preloaded ({why}); install it"
    return ""


def rss_gb(pid: int) -> float:
    """Resident memory of ``pid`` in GB from /proc (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_watched(
    command: Sequence[str], env: dict[str, str], max_rss_gb: float, time_limit_s: float
) -> dict[str, Any]:
    """Run ``command``, killing it above ``max_rss_gb`` resident or after ``time_limit_s``.

    Returns ``returncode``, ``stdout``, ``stderr``, ``wall_s``, ``child_peak_rss_mb`` (the
    child's ``ru_maxrss`` from ``os.wait4``) and ``killed`` (why, or "").
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        killed, seen_gb = "", 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            seen_gb = max(seen_gb, rss_gb(proc.pid))
            elapsed = time.perf_counter() - start
            if not killed and seen_gb > max_rss_gb:
                killed = f">{max_rss_gb:g} GB (killed at {seen_gb:.1f} GB resident)"
            elif not killed and elapsed > time_limit_s:
                killed = f"killed after {elapsed:.0f} s (time limit {time_limit_s:.0f} s)"
            if killed:
                os.kill(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return {
            "returncode": proc.returncode,
            "stdout": out.read(),
            "stderr": err.read(),
            "wall_s": wall,
            "child_peak_rss_mb": usage.ru_maxrss / 1024,
            "killed": killed,
        }


def run_config(
    model: str,
    dtype: str,
    size: int,
    args: argparse.Namespace,
    peer: dict[str, Any] | None,
    structure: Path | None,
) -> dict[str, Any]:
    """Measure one configuration in a fresh subprocess; one row (measured, skipped or failed)."""
    base = {"model": model, "dtype": dtype, "atoms": size}
    if peer is None:  # ours: bench/speed.py's worker in this interpreter
        command = [
            sys.executable,
            str(HERE / "speed.py"),
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
            "--budget-s",
            str(args.budget_s),
            "--max-rss-gb",
            str(args.max_rss_gb),
            "--worker",
            json.dumps({"model": model, "dtype": dtype, "size": size}),
        ]
    else:
        spec = {
            **base,
            "structure": str(structure),
            "threads": args.threads,
            "repeats": args.repeats,
            "budget_s": args.budget_s,
            "max_rss_gb": args.max_rss_gb,
        }
        command = [peer["python"], str(WORKER), "--measure", json.dumps(spec)]
    env = child_env(args.threads, args.allocator)
    result = run_watched(command, env, args.max_rss_gb, 3 * args.budget_s + 120)
    lines = result["stdout"].strip().splitlines()
    if result["killed"]:
        row = {**base, "error": result["killed"]}
        if result["killed"].startswith(">"):
            row = {**base, "skipped": result["killed"]}
    elif result["returncode"] != 0 or not lines:
        tail = last_line(result["stderr"])
        row = {**base, "error": f"exit {result['returncode']}: {tail}"}
        if any(marker in result["stderr"] for marker in MEMORY_ERRORS):
            row = {**base, "skipped": f">{args.max_rss_gb:g} GB (allocation failed: {tail})"}
    else:
        row = json.loads(lines[-1])
    row["wall_s"] = result["wall_s"]
    row["child_peak_rss_mb"] = result["child_peak_rss_mb"]
    return row


def write_water_box(size: int, folder: Path) -> Path:
    """``mlcalc.structures.water_box`` as extxyz for the peers, written by a short subprocess
    so that this parent process never imports torch."""
    path = folder / f"water-{size}.extxyz"
    code = (
        "import sys; from ase.io import write; from mlcalc.structures import water_box; "
        "write(sys.argv[1], water_box(int(sys.argv[2])), format='extxyz')"
    )
    repeats = speed.repeats_for(size)
    subprocess.run([sys.executable, "-c", code, str(path), str(repeats)], check=True)
    return path


def skip_reason(
    previous: dict[str, Any] | None,
    size: int,
    args: argparse.Namespace,
    model: str = "",
    dtype: str = "float32",
) -> str:
    """Why ``model`` at ``size`` and ``dtype`` should not run: a dtype it does not support, or
    the previous (smaller) size of the same model and dtype."""
    if dtype != "float32" and model in FLOAT32_ONLY:
        return FLOAT32_ONLY[model]
    if previous is None:
        return ""
    atoms = f"{previous['atoms']:,} atoms"
    if "skipped" in previous or "error" in previous:
        return f"{atoms} did not finish"
    if previous.get("wall_s", 0.0) > args.budget_s:
        return f"{atoms} took {previous['wall_s']:.0f} s > budget {args.budget_s:g} s"
    return speed.skip_reason(previous, size, args)


# ---------------------------------------------------------------------------------------------
# Table


def speedups(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Peer µs/atom/step ÷ ours, for each of our measured rows and each peer measured at the
    same dtype and size (> 1: ours is faster)."""
    peers = {
        (row["dtype"], row["atoms"], row["model"]): row["us_per_atom"]
        for row in rows
        if row["model"] in PEERS and "us_per_atom" in row
    }
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for row in rows:
        if row["model"] in PEERS or "us_per_atom" not in row:
            continue
        out[(row["model"], row["dtype"], row["atoms"])] = {
            peer: peers[(row["dtype"], row["atoms"], peer)] / row["us_per_atom"]
            for peer in PEERS
            if (row["dtype"], row["atoms"], peer) in peers
        }
    return out


def number(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: rows ordered by dtype, size, then model; one speed-up column per peer
    in ``rows``; skipped and failed configurations say why in the last column."""
    order = {name: i for i, name in enumerate(OURS + PEERS)}
    peers = [p for p in PEERS if any(row["model"] == p for row in rows)]
    ratios = speedups(rows)
    header = ["model", "dtype", "atoms", "ms/step", "µs/atom/step", "steps", "peak RSS (MB)"]
    header += [f"× vs {peer}" for peer in peers] + ["note"]
    cells = []
    for row in sorted(rows, key=lambda r: (r["dtype"], r["atoms"], order.get(r["model"], 99))):
        line = [row["model"], row["dtype"], f"{row['atoms']:,}"]
        if "us_per_atom" in row:
            rss = row.get("child_peak_rss_mb") or row["peak_rss_mb"]
            line += [number(row["median_ms"]), number(row["us_per_atom"]), str(row["steps"])]
            line.append(f"{rss:,.0f}")
            mine = ratios.get((row["model"], row["dtype"], row["atoms"]), {})
            line += [f"{mine[p]:.2f}" if p in mine else "" for p in peers]
            notes = []
            if row["steps"] < row.get("repeats_asked", 0):
                notes.append("budget cut the timed steps")
            if row.get("background_cpu", 0.0) > BUSY:
                notes.append(f"other processes used {100 * row['background_cpu']:.0f} % CPU")
            note = "; ".join(notes)
        else:
            line += ["", "", "", ""] + [""] * len(peers)
            note = f"skipped: {row['skipped']}" if "skipped" in row else f"failed: {row['error']}"
        cells.append([*line, note])
    return header, cells


def render(rows: Sequence[dict[str, Any]], meta: dict[str, Any], as_markdown: bool) -> str:
    """The header lines and the one table, as aligned text or markdown."""
    head, cells = table(rows)
    lines = [f"{key}: {value}" for key, value in header_lines(meta)]
    if as_markdown:
        lines = [f"- {line}" for line in lines] + [""]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(line) + " |" for line in cells]
    else:
        widths = [max(len(str(c)) for c in column) for column in zip(head, *cells, strict=True)]
        lines.append("")
        for line in [head, *cells]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    lines.append("")
    lines.append(
        "× vs PEER = peer µs/atom/step ÷ ours at the same dtype and size "
        "(> 1: ours is faster), both measured in this run."
    )
    return "\n".join(lines)


def header_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    ours = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        ("date", meta["date"]),
        ("CPU", f"{meta['cpu']} ({meta['cores']} cores), {meta['threads']} torch threads"),
        ("allocator", meta.get("allocator", "glibc")),  # runs before 2026-12-08 used glibc
        ("ours", ours),
        (
            "protocol",
            f"E+F+S per MD step, median of up to {meta['repeats']} steps after 1 warm-up, "
            f"budget {meta['budget_s']:g} s/config, memory guard {meta['max_rss_gb']:g} GB",
        ),
    ]
    models = meta.get("peer_models", {})
    if models:
        lines.append(("peer models", "; ".join(f"{k}: {v}" for k, v in models.items())))
    for package, info in meta["peers"].items():
        if "versions" in info:
            text = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        else:
            text = info.get("error", "?")
        lines.append((f"peer {package}", text))
    return lines


def metadata_now(args: argparse.Namespace, peers: dict[str, Any]) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("mlcalc", "torch", "e3nn", "ase", "numpy", "vesin"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": args.threads,
        "allocator": args.allocator,
        "versions": versions,
        "peers": peers,
        "peer_models": {m: PEER_DESCRIPTIONS[m] for m in PEERS if m in args.models},
        "sizes": sorted(args.sizes),
        "dtypes": args.dtype,
        "repeats": args.repeats,
        "budget_s": args.budget_s,
        "max_rss_gb": args.max_rss_gb,
        "loadavg": os.getloadavg()[0],
    }


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 1536, 12288, 98304])
    parser.add_argument("--models", nargs="+", choices=OURS + PEERS, default=OURS + PEERS)
    parser.add_argument(
        "--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"]
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads per child")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps after the warm-up")
    parser.add_argument("--budget-s", type=float, default=300.0, help="per configuration")
    parser.add_argument("--max-rss-gb", type=float, default=20.0, help="memory guard per child")
    parser.add_argument(
        "--allocator",
        choices=sorted(ALLOCATORS),
        default="glibc",
        help="memory allocator of every child (jemalloc: preloaded, see ALLOCATORS)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="peer venvs live here")
    parser.add_argument("--skip-setup", action="store_true", help="never install a peer venv")
    parser.add_argument("--setup-only", action="store_true", help="set up peer venvs and stop")
    parser.add_argument("--json", type=Path, help="write the header and all rows here")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args(argv)
    for size in args.sizes:
        try:
            speed.repeats_for(size)
        except ValueError as error:
            parser.error(str(error))
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1")
    problem = allocator_problem(args.allocator)
    if problem:
        parser.error(problem)
    args.cache = args.cache.expanduser()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    packages = sorted({PEER_CONFIGS[m][0] for m in args.models if m in PEER_CONFIGS})
    peers = {package: setup_peer(args.cache, package, args.skip_setup, log) for package in packages}
    for package, info in peers.items():
        log(f"peer {package}: {info.get('python') or info['error']}")
    missing = any("error" in info for info in peers.values())
    if args.setup_only:
        print(json.dumps(peers, indent=1))
        return 1 if missing else 0

    meta = metadata_now(args, peers)
    rows: list[dict[str, Any]] = []
    previous: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mlcalc-peers-") as tmp:
        for size in sorted(args.sizes):
            usable = any("python" in info for info in peers.values())
            structure = write_water_box(size, Path(tmp)) if usable else None
            for dtype in args.dtype:
                for model in [m for m in OURS + PEERS if m in args.models]:
                    base = {"model": model, "dtype": dtype, "atoms": size}
                    peer = peers[PEER_CONFIGS[model][0]] if model in PEER_CONFIGS else None
                    reason = skip_reason(previous.get((model, dtype)), size, args, model, dtype)
                    if peer is not None and "error" in peer:
                        row = {**base, "error": peer["error"]}
                    elif reason:
                        row = {**base, "skipped": reason}
                    else:
                        row = run_config(model, dtype, size, args, peer, structure)
                    row["repeats_asked"] = args.repeats
                    log(json.dumps(row))
                    rows.append(row)
                    previous[(model, dtype)] = row
                    if args.json:  # after every row: a long run that stops keeps what it did
                        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(render(rows, meta, args.markdown))
    return 1 if missing and args.skip_setup else 0


if __name__ == "__main__":
    sys.exit(main())
