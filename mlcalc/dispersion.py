"""Optional DFT-D3 dispersion correction, added by the calculators on top of a model.

>>> calc = NEMPCalculator.from_pretrained("si", dispersion="d3-bj", dispersion_xc="pbe")

The models are local and know nothing of dispersion; :class:`D3Dispersion` adds the D3
energy, forces and stress of the whole structure in the calculator layer. The backend is
simple-dftd3 (``pip install "mlcalc[d3]"``), the reference implementation of DFT-D3 by its
authors: analytic forces and virial, molecules, slabs and periodic cells, and the published
damping parameters of each functional. It runs on the CPU in float64 whatever the model's
device and dtype. Two-body terms only (no Axilrod-Teller-Muto three-body term), as in the
usual DFT-D3(BJ) and D3(0) corrections and simple-dftd3's own ASE calculator.

Units: energy eV, forces eV/Å, stress eV/Å³ (ASE's sign, Voigt order), distances Å.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress
from ase.units import Bohr, Hartree

#: Dispersion name → (simple-dftd3 damping-parameter class, its key in the parameter table).
DAMPINGS: dict[str, tuple[str, str]] = {
    "d3-bj": ("RationalDampingParam", "bj"),
    "d3-zero": ("ZeroDampingParam", "zero"),
}
#: Default pair cutoff, Å: simple-dftd3's own (60 Bohr, 31.75 Å).
DEFAULT_CUTOFF = 60.0 * Bohr
#: simple-dftd3's cutoff of the coordination numbers (40 Bohr, 21.17 Å); smaller if the pair
#: cutoff is.
COORDINATION_CUTOFF = 40.0 * Bohr


def _backend() -> Any:
    """simple-dftd3's Python interface, or an ``ImportError`` that says how to install it."""
    try:
        from dftd3 import interface
    except ImportError as error:
        raise ImportError(
            'dispersion needs simple-dftd3: pip install "mlcalc[d3]" (or pip install dftd3)'
        ) from error
    return interface


def functionals(damping: str) -> list[str]:
    """Functionals that simple-dftd3 has parameters for with ``damping`` (``"d3-bj"``...)."""
    key = DAMPINGS[damping][1]
    table = resources.files("dftd3").joinpath("parameters.toml").read_text()
    names = []
    for block in re.split(r"^\[parameter\.", table, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("]")
        if re.search(rf"^d3\.{key}\s*=", body, flags=re.MULTILINE):
            names.append(name.strip().strip('"'))
    return names


class D3Dispersion:
    """DFT-D3 energy, forces and stress of a structure (simple-dftd3).

    Args:
        damping: ``"d3-bj"`` (Becke-Johnson, rational) or ``"d3-zero"`` (zero damping).
        xc: the functional whose damping parameters to use, as simple-dftd3 names it
            (case-insensitive): ``"pbe"``, ``"pbe0"``, ``"r2scan"``, ``"wb97x"``,
            ``"b3lyp"``... Use the functional of the model's training data.
        cutoff: pair cutoff, Å (default 31.75 Å, simple-dftd3's); the coordination numbers
            use the smaller of 21.17 Å and ``cutoff``.

    Raises:
        ImportError: simple-dftd3 is not installed.
        ValueError: unknown ``damping``, no parameters for ``xc`` with it (the message lists
            the functionals that have them), or a cutoff that is not positive.
    """

    def __init__(self, damping: str = "d3-bj", xc: str = "pbe", cutoff: float = DEFAULT_CUTOFF):
        interface = _backend()
        if damping not in DAMPINGS:
            raise ValueError(f"dispersion must be one of {sorted(DAMPINGS)}, got {damping!r}")
        if not cutoff > 0:
            raise ValueError(f"dispersion_cutoff must be positive (Å), got {cutoff}")
        try:
            self._param = getattr(interface, DAMPINGS[damping][0])(method=xc)
        except RuntimeError as error:  # simple-dftd3: "No entry for '...' present"
            raise ValueError(
                f"no {damping} parameters for dispersion_xc={xc!r}; simple-dftd3 has them for "
                f"{', '.join(functionals(damping))}"
            ) from error
        self._interface = interface
        self.damping, self.xc, self.cutoff = damping, xc, float(cutoff)

    def __getstate__(self) -> dict[str, Any]:
        """Names only, so that calculators can be copied and pickled (the parameters are a
        handle into the library)."""
        return {"damping": self.damping, "xc": self.xc, "cutoff": self.cutoff}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"D3Dispersion(damping={self.damping!r}, xc={self.xc!r}, cutoff={self.cutoff})"

    def __call__(self, atoms: Atoms, energies: bool = False) -> dict[str, Any]:
        """``energy`` (eV), ``forces [N, 3]`` (eV/Å), ``stress [6]`` (eV/Å³, only when
        periodic in all directions) and, with ``energies=True``, per-atom ``energies [N]``
        (eV, half of each pair's energy to either atom; costs N² memory)."""
        model = self._interface.DispersionModel(
            atoms.numbers, atoms.positions / Bohr, atoms.cell[:] / Bohr, atoms.pbc
        )
        pairs = self.cutoff / Bohr
        others = min(self.cutoff, COORDINATION_CUTOFF) / Bohr
        model.set_realspace_cutoff(disp2=pairs, disp3=others, cn=others)
        out = model.get_dispersion(self._param, grad=True)
        result: dict[str, Any] = {
            "energy": float(out["energy"]) * Hartree,
            "forces": -out["gradient"] * (Hartree / Bohr),
        }
        if atoms.pbc.all():
            result["stress"] = full_3x3_to_voigt_6_stress(out["virial"]) * (
                Hartree / atoms.get_volume()
            )
        if energies:
            pairwise = model.get_pairwise_dispersion(self._param)
            result["energies"] = Hartree * sum(matrix.sum(axis=1) for matrix in pairwise.values())
        return result

    def add_to(self, results: dict[str, Any], atoms: Atoms, energies: bool = False) -> None:
        """Add the dispersion of ``atoms`` to a calculator's ``results`` in place.

        ``energy``, ``free_energy``, ``forces`` and ``stress`` (where present) become model +
        D3. Per-atom ``energies`` do too when ``energies=True``; otherwise they are removed, so
        that ASE asks again (with ``energies``) rather than return the model's part alone.
        """
        d3 = self(atoms, energies=energies and "energies" in results)
        for name in ("energy", "free_energy"):
            results[name] += d3["energy"]
        results["forces"] = results["forces"] + d3["forces"]
        if "stress" in results:
            results["stress"] = results["stress"] + d3["stress"]
        if "energies" in d3:
            results["energies"] = results["energies"] + d3["energies"]
        else:
            results.pop("energies", None)
