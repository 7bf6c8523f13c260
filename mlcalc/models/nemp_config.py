"""Hyper-parameters and presets of :class:`~mlcalc.models.nemp.NEMP`."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from mlcalc.models.base import ModelConfig
from mlcalc.models.blocks import MLPSpec

#: Fields of the spec's ``nemp-small`` preset (the defaults are ``nemp-default``).
SMALL_PRESET: dict[str, Any] = {
    "l_max": 2,
    "l_max_features": 1,
    "channels": 8,
    "num_radial": 8,
    "pair_code_width": 32,
    "num_interactions": 2,
    "embedding_mlp": [1, 32, 2],
    "radial_mlp": [1, 32, 1, False],
    "interaction_mlp": [1, 32, 1, False],
    "readout_mlp": [1, 64, 1, False],
    "use_norm": True,
}


@dataclasses.dataclass
class NEMPConfig(ModelConfig):
    """Hyper-parameters of :class:`NEMP`. Defaults are the spec's ``nemp-default`` preset;
    :meth:`preset` gives ``"default"``, ``"small"``, ``"medium"`` (``small`` with 16 channels
    and ``l_max_features = 2``, the training recipe's model), ``"fast"`` (``small`` with one
    interaction, 16 radial functions and wider pair code and readout) or ``"3bpa"``.

    Attributes:
        elements: chemical symbols the model handles.
        cutoff: cutoff radius ``r_c``, Å.
        envelope_exponent: order ``p`` of the polynomial envelope (squared in NEMP).
        l_max: ``L``, max ``l`` of the fresh spherical-harmonic expansion of each centre.
        l_max_features: ``L'``, max ``l`` of the carried node features (``<= l_max``).
        channels: ``C``.
        num_radial: ``N_r``, sinc radial functions.
        pair_code_width: ``P``, width of the element-pair code.
        num_interactions: ``T``, message-passing iterations.
        embedding_mlp, radial_mlp, interaction_mlp, readout_mlp:
            ``[n_blocks, width, layers_per_block, linear]`` of the pair-embedding MLPs,
            ``F_edge^0``, ``F_edge^t``/``G_t`` and the atomic-energy MLP.
        use_norm: per-node RMS normalisation of the node features after each layer.
        use_readout_bias: biases in the atomic-energy MLP.
        share_rho0_row: reuse row ``L'`` of ``F_edge^0`` as the first node invariant
            (the reference code's behaviour).
        neighbor_norm: ``"smooth_count"`` divides neighbour sums by the smooth coordination
            number ``n_i``; ``"constant"`` by ``avg_num_neighbors`` (smooth at the cutoff).
        avg_num_neighbors: the constant used with ``neighbor_norm="constant"``.
    """

    cutoff: float = 5.0
    envelope_exponent: int = 6
    l_max: int = 2
    l_max_features: int = 2
    channels: int = 16
    num_radial: int = 16
    pair_code_width: int = 128
    num_interactions: int = 3
    embedding_mlp: list = dataclasses.field(default_factory=lambda: [2, 128, 2])
    radial_mlp: list = dataclasses.field(default_factory=lambda: [2, 64, 2, False])
    interaction_mlp: list = dataclasses.field(default_factory=lambda: [2, 64, 2, False])
    readout_mlp: list = dataclasses.field(default_factory=lambda: [2, 128, 2, False])
    use_norm: bool = True
    use_readout_bias: bool = False
    share_rho0_row: bool = True
    neighbor_norm: Literal["smooth_count", "constant"] = "smooth_count"
    avg_num_neighbors: float = 1.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "small": SMALL_PRESET,
        # small with twice the channels and l <= 2 node features: the training recipe's model
        "medium": {**SMALL_PRESET, "l_max_features": 2, "channels": 16},
        # small with one interaction: the equivariant work of one layer, the per-edge and
        # per-atom MLPs (almost free beside it) wider
        "fast": {
            **SMALL_PRESET,
            "num_interactions": 1,
            "num_radial": 16,
            "pair_code_width": 64,
            "readout_mlp": [1, 128, 1, False],
        },
        "3bpa": {
            "envelope_exponent": 2,
            "l_max": 3,
            "l_max_features": 2,
            "channels": 64,
            "num_radial": 64,
            "pair_code_width": 32,
            "num_interactions": 3,
            "embedding_mlp": [1, 64, 2],
            "radial_mlp": [1, 64, 2, True],
            "interaction_mlp": [1, 64, 0, True],
            "readout_mlp": [1, 128, 0, True],
            "use_norm": False,
        },
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("embedding_mlp", "radial_mlp", "interaction_mlp", "readout_mlp"):
            setattr(self, name, MLPSpec.coerce(getattr(self, name)).as_list())
        if not 0 <= self.l_max_features <= self.l_max:
            raise ValueError(
                f"need 0 <= l_max_features <= l_max, got {self.l_max_features} and {self.l_max}"
            )
        self.require_at_least_one(
            "channels", "num_radial", "pair_code_width", "num_interactions", "envelope_exponent"
        )
        self.require_choice("neighbor_norm", ("smooth_count", "constant"))
        self.require_positive("avg_num_neighbors")
