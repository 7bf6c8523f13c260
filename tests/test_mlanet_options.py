"""MLANet's optional pieces: value_tp, force_head_gate, context_pooling and named presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import crystal, ethanol, evaluate, random_orthogonal

from mlcalc.models import MLANet, MLANetConfig
from mlcalc.models.mlanet_options import CONTEXT_POOLING_WARNING

SMALL = dict(elements=["H", "C", "O"], cutoff=3.5, channels=8, num_heads=2, readout_channels=8)


def _model(**options) -> MLANet:
    torch.manual_seed(0)
    config = MLANetConfig(**{**SMALL, "num_interactions": 2, "energy_mlp_hidden": [8], **options})
    return MLANet(config).double()


def _check_equivariance(model: MLANet, atoms) -> None:
    rotation = random_orthogonal(seed=5, improper=True)
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.set_cell(atoms.cell[:] @ rotation.T)
    stress = bool(atoms.pbc.all())
    before, after = evaluate(model, atoms, stress), evaluate(model, rotated, stress)
    np.testing.assert_allclose(after["energy"], before["energy"], atol=1e-10)
    np.testing.assert_allclose(after["forces"], before["forces"] @ rotation.T, atol=1e-10)
    if stress:
        expected = rotation @ before["stress"][0] @ rotation.T
        np.testing.assert_allclose(after["stress"][0], expected, atol=1e-10)


def _check_finite_differences(model: MLANet, atoms, h: float = 1e-5) -> None:
    forces = evaluate(model, atoms)["forces"]
    for a, x in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[a, x] += sign * h
            energies.append(float(evaluate(model, displaced)["energy"][0]))
        assert forces[a, x] == pytest.approx(-(energies[0] - energies[1]) / (2 * h), abs=1e-7)


@pytest.mark.parametrize("lmax", [1, 2])
def test_value_tp_is_equivariant_and_changes_the_model(lmax):
    for mode in ("direct", "conservative"):
        model = _model(lmax=lmax, value_tp=True, force_mode=mode)
        assert all(layer.value_tp is not None for layer in model.interactions)
        _check_equivariance(model, ethanol())
        _check_equivariance(model, crystal())
    model = _model(lmax=lmax, value_tp=True, force_mode="conservative")
    _check_finite_differences(model, ethanol())
    plain = _model(lmax=lmax, force_mode="conservative")
    assert evaluate(plain, ethanol())["energy"] != pytest.approx(
        evaluate(model, ethanol())["energy"]
    )


def test_gated_force_block_is_equivariant():
    model = _model(lmax=2, force_head_gate=True)
    assert model.force_block is not None
    _check_equivariance(model, ethanol())
    _check_equivariance(model, crystal())
    with pytest.raises(ValueError, match="force_head_gate needs force_mode='direct'"):
        MLANetConfig(elements=["H"], force_head_gate=True, force_mode="conservative")


def test_context_pooling_warns_and_is_extensive_and_conservative():
    with pytest.warns(UserWarning, match="context_pooling is experimental"):
        model = _model(lmax=1, force_mode="conservative", context_pooling=True)
    assert "not local" in CONTEXT_POOLING_WARNING
    cell = crystal()
    single = evaluate(model, cell)["energy"][0]
    assert evaluate(model, cell * (2, 1, 1))["energy"][0] == pytest.approx(2 * single, abs=1e-9)
    _check_finite_differences(model, ethanol())
    _check_equivariance(model, crystal())
    with pytest.raises(ValueError, match="context_pooling is for force_mode='conservative'"):
        MLANetConfig(elements=["H"], context_pooling=True)


def test_named_presets():
    for name, values in MLANetConfig.PRESETS.items():
        config = MLANetConfig.preset(name, elements=["H", "O"])
        assert all(getattr(config, key) == value for key, value in values.items())
    assert MLANetConfig.preset("default", elements=["H"]) == MLANetConfig(elements=["H"])
    small = MLANetConfig.preset("small", elements=["H", "O"], lmax=2)
    assert small.lmax == 2 and small.channels == 16
    assert MLANet(MLANetConfig.preset("conservative", elements=["H"])).has_atomic_energies
    with pytest.raises(ValueError, match="unknown MLANet preset 'huge'"):
        MLANetConfig.preset("huge", elements=["H"])
