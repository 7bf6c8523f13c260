"""Property workflows that take any ASE calculator (mlcalc's, EMT, MACE, ...).

Each function takes the structure(s) and a calculator first, options as keywords, and returns a
:class:`~mlcalc.workflows.result.WorkflowResult` with ``to_json``, ``to_csv`` and ``plot``.
"""

from mlcalc.workflows.dimer import DimerCurve, DimerResult, dimer_scan
from mlcalc.workflows.dynamics import MDResult, RelaxResult, md, relax
from mlcalc.workflows.eos import EOSFit, EVResult, ev_curve
from mlcalc.workflows.lattice_dynamics import PhononResult, phonons
from mlcalc.workflows.layers import ExfoliationResult, exfoliation_curve
from mlcalc.workflows.pair_distribution import RDFResult, rdf
from mlcalc.workflows.reaction_path import NEBResult, neb
from mlcalc.workflows.result import WorkflowResult
from mlcalc.workflows.sliding import LineCut, SlidingResult, sliding_pes

__all__ = [
    "DimerCurve",
    "DimerResult",
    "EOSFit",
    "EVResult",
    "ExfoliationResult",
    "LineCut",
    "MDResult",
    "NEBResult",
    "PhononResult",
    "RDFResult",
    "RelaxResult",
    "SlidingResult",
    "WorkflowResult",
    "dimer_scan",
    "ev_curve",
    "exfoliation_curve",
    "md",
    "neb",
    "phonons",
    "rdf",
    "relax",
    "sliding_pes",
]
