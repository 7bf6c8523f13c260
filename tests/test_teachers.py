"""Teachers of ``mlcalc learn`` (mlcalc.learn.teachers): named ones, ``module:factory``
ones, their element checks, and the per-process, per-thread cache of labelling workers."""

from __future__ import annotations

import importlib.util
import pickle
import re
import threading

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlcalc.learn.teachers import MissingTeacherError, TeacherSpec, cached_teacher


def emt_for_metals() -> EMT:
    """A factory that says which elements it covers (importable as ``test_teachers:...``)."""
    return EMT()


emt_for_metals.supported_elements = ("Cu", "Ni")  # type: ignore[attr-defined]


def not_a_calculator() -> str:
    return "EMT"


NOT_CALLABLE = 42


# ------------------------------------------------------------------------------- emt and specs


def test_emt_builds_and_labels_copper():
    spec = TeacherSpec("emt")
    atoms = bulk("Cu", cubic=True) * 2
    atoms.rattle(0.05, seed=1)
    atoms.calc = spec.build()
    assert isinstance(atoms.calc, EMT) and atoms.calc is not spec.build()
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (32, 3) and np.abs(atoms.get_forces()).max() > 1e-3
    assert {"Cu", "Ni", "H", "O"} <= spec.supported_elements() and "Si" not in (
        spec.supported_elements()
    )
    assert spec.describe().startswith("EMT (ASE 3.")
    spec.check(["Cu", "Ni"])


def test_named_teachers_are_case_insensitive_and_options_are_copied():
    options = {"asap_cutoff": True}
    spec = TeacherSpec("EMT", options)
    options["asap_cutoff"] = False
    assert spec.name == "emt" and spec.options == {"asap_cutoff": True}


@pytest.mark.parametrize("name", ["foo", "dft", "a:b:c", ":factory", "module:", "my-mod:f"])
def test_unknown_teacher_name(name):
    with pytest.raises(ValueError, match=f"unknown teacher '{name}': choose emt, xtb, sevennet"):
        TeacherSpec(name)


def test_check_names_the_teacher_and_the_elements_it_lacks():
    with pytest.raises(ValueError, match=r"EMT \(ASE .*\) has no parameters for Si, Ti$"):
        TeacherSpec("emt").check(["Cu", "Ti", "Si", "Cu"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
        ("test_teachers:no_such_factory", "'test_teachers' has no 'no_such_factory'"),
        ("test_teachers:NOT_CALLABLE", "'NOT_CALLABLE' is a int, not a callable"),
    ],
)
def test_check_rejects_factories_that_cannot_be_used(name, message):
    spec = TeacherSpec(name)
    with pytest.raises(ValueError, match=message):
        spec.check(["Cu"])
    with pytest.raises(ValueError, match=message):
        spec.build()


def test_factory_must_return_a_calculator():
    with pytest.raises(ValueError, match="returned str, not an ASE calculator"):
        TeacherSpec("test_teachers:not_a_calculator").build()


def test_generic_factory_elements_from_the_factory_or_unknown():
    spec = TeacherSpec("test_teachers:emt_for_metals")
    assert spec.supported_elements() == {"Cu", "Ni"}
    with pytest.raises(ValueError, match="test_teachers:emt_for_metals has no parameters for O"):
        spec.check(["O", "Cu"])
    plain = TeacherSpec("ase.calculators.emt:EMT", {"asap_cutoff": True})
    assert plain.supported_elements() is None
    plain.check(["Si", "Og"])  # unknown: nothing to check against
    assert isinstance(plain.build(), EMT) and plain.build().parameters.asap_cutoff
    assert plain.describe().startswith("ase.calculators.emt:EMT (ase 3.")


@pytest.mark.parametrize(
    ("name", "extra"), [("xtb", "mlcalc[xtb]"), ("sevennet", "mlcalc[sevennet]")]
)
def test_missing_package_names_the_extra(monkeypatch, name, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda n, *a: None if n in ("tblite", "sevenn") else real(n, *a),
    )
    spec = TeacherSpec(name)
    for call in (lambda: spec.check(["H"]), spec.build):
        with pytest.raises(MissingTeacherError, match=re.escape(f"pip install '{extra}'")) as error:
            call()
        assert isinstance(error.value, ValueError) and isinstance(error.value, ImportError)


def test_spec_pickles_and_hashes_with_unhashable_options():
    spec = TeacherSpec("xtb", {"method": "GFN1-xTB", "electric_field": [0.0, 0.0, 0.1]})
    copy = pickle.loads(pickle.dumps(spec))
    assert copy == spec and hash(copy) == hash(spec) and {spec: 1}[copy] == 1
    assert copy != TeacherSpec("xtb", {"method": "GFN1-xTB", "electric_field": [0.0, 0.0, 0.2]})


def test_cached_teacher_once_per_thread():
    spec = TeacherSpec("emt")
    first = cached_teacher(spec)
    assert cached_teacher(TeacherSpec("emt")) is first
    assert cached_teacher(TeacherSpec("emt", {"asap_cutoff": True})) is not first
    other = []
    thread = threading.Thread(target=lambda: other.extend([cached_teacher(spec)] * 2))
    thread.start()
    thread.join()
    assert other[0] is other[1] and other[0] is not first and isinstance(other[0], EMT)


# --------------------------------------------------------------------------------- xtb, sevennet


def test_xtb_labels_water():
    pytest.importorskip("tblite", reason="the xtb teacher needs pip install 'mlcalc[xtb]'")
    spec = TeacherSpec("xtb")
    atoms = molecule("H2O")
    atoms.calc = spec.build()
    # tblite's documented GFN2-xTB energy of ase.build.molecule("H2O")
    assert atoms.get_potential_energy() == pytest.approx(-137.96777594361677, abs=1e-4)
    forces = atoms.get_forces()
    assert forces.shape == (3, 3) and np.abs(forces.sum(axis=0)).max() < 1e-6
    elements = spec.supported_elements()
    assert len(elements) == 86 and {"H", "C", "Si", "Au", "Rn"} <= elements and "Fr" not in elements
    assert spec.describe().startswith("GFN2-xTB (tblite ")
    assert TeacherSpec("xtb", {"method": "GFN1-xTB"}).describe().startswith("GFN1-xTB (tblite ")


def test_sevennet_labels_silicon():
    pytest.importorskip(
        "sevenn", reason="the sevennet teacher needs pip install 'mlcalc[sevennet]'"
    )
    spec = TeacherSpec("sevennet")
    elements = spec.supported_elements()  # from the bundled checkpoint: no structure needed
    assert len(elements) == 89 and {"H", "O", "Si", "Cu", "Bi"} <= elements and "Og" not in elements
    spec.check(["Si", "O"])
    atoms = bulk("Si")  # 2 atoms
    atoms.calc = spec.build()
    assert atoms.get_potential_energy() == pytest.approx(-10.80, abs=0.05)
    assert atoms.get_forces().shape == (2, 3) and atoms.get_stress().shape == (6,)
    assert spec.describe().startswith("SevenNet-0 (sevenn ")
