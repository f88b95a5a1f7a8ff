"""Model-size choice for a compute budget (Chinchilla) and scaling arithmetic.

Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", Sec. 3.3 (Approach 3):
L(N, D) = E + A / N^alpha + B / D^beta with E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28;
training compute C = 6 N D (Kaplan et al. 2020, Sec. 2.1). Minimising L at fixed C gives
N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = G^-1 (C/6)^(alpha/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)).
Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt") refit the same data; pass their constants
as ``fit=EPOCH_2024`` to compare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from capsim._types import Num
from capsim.errors import require


@dataclass(frozen=True)
class LossFit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str


CHINCHILLA_2022 = LossFit(1.69, 406.4, 410.7, 0.34, 0.28, "Hoffmann et al. 2022, Approach 3")
EPOCH_2024 = LossFit(1.8172, 482.01, 2085.43, 0.3478, 0.3658, "Besiroglu et al. 2024, Table 1")


def chinchilla_loss(params: Num, tokens: Num, fit: LossFit = CHINCHILLA_2022) -> Num:
    """Predicted pre-training loss (nats/token on MassiveText) of N parameters trained on D tokens."""
    n, d = np.asarray(params, float), np.asarray(tokens, float)
    return fit.E + fit.A / n**fit.alpha + fit.B / d**fit.beta


@dataclass(frozen=True)
class ComputeOptimal:
    flops: Num
    params: Num
    tokens: Num
    tokens_per_param: Num
    loss: Num
    fit: str

    def to_dict(self) -> dict[str, object]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def compute_optimal(flops: Num, fit: LossFit = CHINCHILLA_2022) -> ComputeOptimal:
    """The loss-minimising (params, tokens) for a training budget of ``flops`` (C = 6 N D)."""
    c = np.asarray(flops, float)
    require(bool(np.all(c > 0)), "flops", "the compute budget must be positive")
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1.0 / (a + b))
    n = g * (c / 6.0) ** (b / (a + b))
    d = (c / 6.0) ** (a / (a + b)) / g
    out = [n, d, d / n, chinchilla_loss(n, d, fit)]
    if np.ndim(flops) == 0:
        out = [float(x) for x in out]
        c = float(c)
    return ComputeOptimal(c, *out, fit=fit.source)


def training_flops(params: Num, tokens: Num) -> Num:
    """C = 6 N D (Kaplan et al. 2020, Sec. 2.1)."""
    return 6.0 * np.asarray(params, float) * np.asarray(tokens, float)
