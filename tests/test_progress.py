"""Progress bars: tqdm on stderr, on a terminal by default, never on stdout."""

from __future__ import annotations

import io

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from mlcalc.progress import progress_bar
from mlcalc.workflows import dimer_scan, ev_curve


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_shows_on_a_terminal_only_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert list(progress_bar(range(3), desc="scan", unit="points")) == [0, 1, 2]
    assert "scan: 100%" in terminal.getvalue() and "3/3 points" in terminal.getvalue()
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    list(progress_bar(range(3), desc="scan", unit="points"))
    list(progress_bar(range(3), desc="scan", unit="points", enabled=False))
    assert pipe.getvalue() == ""
    list(progress_bar(range(3), desc="scan", unit="points", enabled=True))
    assert "3/3 points" in pipe.getvalue()
    counter = progress_bar(desc="neb", unit="steps", enabled=True)
    counter.update(4)
    counter.close()
    assert "neb: 4 steps [" in pipe.getvalue()


def test_scans_are_quiet_off_a_terminal_and_never_write_to_stdout(
    capsys: pytest.CaptureFixture,
) -> None:
    copper = bulk("Cu", cubic=True)
    ev_curve(copper, EMT(), num_points=5)
    dimer_scan("Cu", EMT(), distances=[2.0, 2.3, 2.6, 3.0])
    assert capsys.readouterr() == ("", "")
    ev_curve(copper, EMT(), num_points=5, progress=True)
    dimer_scan("Cu", EMT(), distances=[2.0, 2.3, 2.6, 3.0], progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "5/5 volumes" in captured.err and "4/4 dimers" in captured.err
