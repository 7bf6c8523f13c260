"""Property workflows that take any ASE calculator (mlcalc's, EMT, MACE, ...).

Each function takes the structure(s) and a calculator first, options as keywords, and returns a
:class:`~mlcalc.workflows.result.WorkflowResult` with ``to_json``, ``to_csv`` and ``plot``.
"""

from mlcalc.workflows.dimer import DimerCurve, DimerResult, dimer_scan
from mlcalc.workflows.eos import EOSFit, EVResult, ev_curve
from mlcalc.workflows.result import WorkflowResult

__all__ = [
    "DimerCurve",
    "DimerResult",
    "EOSFit",
    "EVResult",
    "WorkflowResult",
    "dimer_scan",
    "ev_curve",
]
