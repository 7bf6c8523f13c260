"""NEMP's node-space Clebsch–Gordan product (``shared/docs/architecture.md`` §2, step (g))."""

from __future__ import annotations

import math

import torch
from e3nn import o3

from mlcalc.models.blocks import scatter_sum
from mlcalc.models.constants import ExactConstants


def l_of_k(l_max: int) -> torch.Tensor:
    """``[(l_max+1)^2]`` the ``l`` of each flat ``(l, m)`` index."""
    return torch.cat([torch.full((2 * l + 1,), l, dtype=torch.int64) for l in range(l_max + 1)])


class NodeTensorProduct(ExactConstants):
    """Channel-wise ("uuu") CG product of ``A [N, K1, C]`` and ``V [N, K2, C]`` into ``[N, K', C]``.

    Paths are all ``(l1, l2, lf)`` with ``l1 <= l_max_1``, ``l2, lf <= l_max_out``, the triangle
    rule and ``l1 + l2 + lf`` even. Coefficients are e3nn's ``wigner_3j`` (unit Frobenius
    norm), stored sparsely; each path has its own per-node, per-channel weight, and the output
    of ``lf`` is divided by ``sqrt`` of the number of paths into it.
    """

    def __init__(self, l_max_1: int, l_max_2: int, l_max_out: int) -> None:
        super().__init__()
        self.paths = [
            (l1, l2, lf)
            for l1 in range(l_max_1 + 1)
            for l2 in range(l_max_2 + 1)
            for lf in range(l_max_out + 1)
            if abs(l1 - l2) <= lf <= l1 + l2 and (l1 + l2 + lf) % 2 == 0
        ]
        paths_into = [sum(p[2] == lf for p in self.paths) for lf in range(l_max_out + 1)]
        k1, k2, kf, path_of, value = [], [], [], [], []
        for index, (l1, l2, lf) in enumerate(self.paths):
            cg = o3.wigner_3j(l1, l2, lf, dtype=torch.float64) / math.sqrt(paths_into[lf])
            for m1, m2, mf in torch.nonzero(cg.abs() > 1e-12).tolist():
                k1.append(l1 * l1 + m1)
                k2.append(l2 * l2 + m2)
                kf.append(lf * lf + mf)
                path_of.append(index)
                value.append(cg[m1, m2, mf].item())
        self.out_dim = (l_max_out + 1) ** 2
        self.register_buffer("k1", torch.tensor(k1), persistent=False)
        self.register_buffer("k2", torch.tensor(k2), persistent=False)
        self.register_buffer("kf", torch.tensor(kf), persistent=False)
        self.register_buffer("path_of", torch.tensor(path_of), persistent=False)
        self.register_constant("cg", torch.tensor(value, dtype=torch.float64))

    @property
    def num_paths(self) -> int:
        return len(self.paths)

    def forward(self, a: torch.Tensor, v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``a [N, K1, C]``, ``v [N, K2, C]``, ``weights [N, num_paths, C]`` → ``[N, K', C]``."""
        coupling = weights.index_select(1, self.path_of) * self.cg[None, :, None]
        products = a.index_select(1, self.k1) * v.index_select(1, self.k2) * coupling
        return scatter_sum(products, self.kf, self.out_dim, dim=1)
