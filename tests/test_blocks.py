"""The custom autograd functions of mlcalc.models.blocks: values and first and second
derivatives against torch's own operations (force training differentiates twice)."""

from __future__ import annotations

import pytest
import torch

from mlcalc.models.blocks import gathered_product, scatter_sum


@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_sum_matches_index_add_and_gradchecks(dim: int) -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(7, 5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    index = torch.randint(0, 4, (values.shape[dim],), generator=generator)
    shape = list(values.shape)
    shape[dim] = 4
    expected = values.new_zeros(shape).index_add_(dim, index, values)
    torch.testing.assert_close(scatter_sum(values, index, 4, dim), expected, rtol=0, atol=0)
    torch.autograd.gradcheck(lambda v: scatter_sum(v, index, 4, dim), (values,))
    torch.autograd.gradgradcheck(lambda v: scatter_sum(v, index, 4, dim) ** 2, (values,))


@pytest.mark.parametrize(
    ("dim", "other_shape"), [(0, (9, 4, 1)), (0, (9, 4, 3)), (1, (6, 9, 3)), (1, (6, 9, 1))]
)
def test_gathered_product_matches_index_select_and_gradchecks(dim: int, other_shape) -> None:
    generator = torch.Generator().manual_seed(1)
    source_shape = (5, 4, 3) if dim == 0 else (6, 4, 3)
    source = torch.randn(source_shape, dtype=torch.float64, generator=generator)
    other = torch.randn(other_shape, dtype=torch.float64, generator=generator)
    index = torch.randint(0, 4, (9,), generator=generator)
    source.requires_grad_(True)
    other.requires_grad_(True)
    expected = source.index_select(dim, index) * other
    torch.testing.assert_close(gathered_product(source, index, other, dim), expected)

    def product(s: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return gathered_product(s, index, o, dim)

    torch.autograd.gradcheck(product, (source, other))
    torch.autograd.gradgradcheck(product, (source, other))
