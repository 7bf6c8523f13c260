"""Constant buffers that stay exact in every dtype.

A constant (Clebsch–Gordan coefficients, basis frequencies, normalisation factors) is computed
once in float64 and kept as a float64 master outside the state dict; the module's buffer is a
working copy in the model's dtype. Whenever a cast changes the buffer's dtype (``.to``,
``.double()``, ``.float()``), the copy is re-derived from the master instead of from the old
copy, so every path to a float64 model (built in float64; built in float32 and cast; a float32
checkpoint loaded and cast) holds bit-identical constants.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ExactConstants(nn.Module):
    """Mixin for modules with float64-exact constant buffers (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._float64_constants: dict[str, torch.Tensor] = {}

    def register_constant(self, name: str, value: torch.Tensor) -> None:
        """Non-persistent buffer ``name`` in the default dtype, re-derived from ``value``
        (float64, computed in float64) on every cast that changes its dtype."""
        if value.dtype != torch.float64:
            raise TypeError(f"constant {name!r} must be computed in float64, got {value.dtype}")
        master = value.detach().to("cpu").clone()
        self._float64_constants[name] = master
        self.register_buffer(name, master.to(torch.get_default_dtype()), persistent=False)

    def _apply(
        self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True
    ) -> ExactConstants:
        dtypes = {name: self._buffers[name].dtype for name in self._float64_constants}
        super()._apply(fn, recurse)
        for name, master in self._float64_constants.items():
            current = self._buffers[name]
            if current is not None and current.dtype != dtypes[name]:
                self._buffers[name] = master.to(device=current.device, dtype=current.dtype)
        return self
