"""bench/speed.py's model table: every model it names builds, with the fields it names."""

from __future__ import annotations

import pytest
from ase.build import molecule
from helpers import load_bench

speed = load_bench("speed")


@pytest.mark.parametrize("name", [m for m, spec in speed.MODELS.items() if spec[0] != "registry"])
def test_every_random_weight_model_builds_as_named(name: str) -> None:
    architecture, options, calculator_options = speed.MODELS[name]
    calc = speed.build_calculator(name, "float32")
    assert calc.model.architecture == architecture
    fields = {k: v for k, v in options.items() if k != "preset"}
    for field, value in fields.items():
        assert getattr(calc.model.config, field) == value
    assert (calc.compiled is not None) == bool(calculator_options.get("compile"))


def test_the_one_interaction_small_preset_runs() -> None:
    calc = speed.build_calculator("nemp-small-t1", "float32")
    assert calc.model.config.num_interactions == 1 and calc.model.config.channels == 8
    water = molecule("H2O")
    water.calc = calc
    assert abs(water.get_forces().sum(0)).max() < 1e-4
