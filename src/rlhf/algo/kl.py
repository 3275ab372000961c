"""Per-token KL estimators (k1, k2, k3) and the KL-coefficient controllers."""

from __future__ import annotations

import torch


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """(B, R) logp - logp_ref per token: the k1 estimator of KL(pi || ref).

    Unbiased on samples from pi but negative on some tokens; it is the per-token penalty of
    Ziegler et al. 2019 and of the N+ details (Schulman, "Approximating KL divergence"). Used
    as a reward (no gradient through it), its expected policy gradient E[k1 grad log pi] is
    exactly grad KL(pi || ref): the right penalty.
    """
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """(B, R) (r - 1) - log r with r = p_ref / p: the k3 estimator of KL(pi || ref).

    Unbiased on samples from pi, never negative and of lower variance than k1 (Schulman,
    "Approximating KL divergence"): a good estimate of the KL's value. Not a good penalty:
    used as a reward, its expected gradient is grad KL(pi || ref) - grad KL(ref || pi), only
    a few percent of the KL gradient near the reference (Tang & Munos 2025). Used as a loss
    term on samples of pi (gradient through it, as GRPO does), its expected gradient is
    E[(1 - r) grad log pi] = grad KL(ref || pi): the reverse KL's, not KL(pi || ref)'s (Tang &
    Munos 2025). expm1 keeps r - 1 accurate when r is close to 1.
    """
    log_ratio = ref_logprobs - logprobs  # (B, R) log r
    return torch.expm1(log_ratio) - log_ratio


def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """(B, R) 0.5 * (logp - logp_ref)^2: the k2 estimator of KL(pi || ref).

    Biased but never negative, and close to the KL near the reference (Schulman,
    "Approximating KL divergence"). The right one as a loss term (gradient through it) on
    samples of pi: its expected gradient E[(logp - logp_ref) grad log pi] is exactly
    grad KL(pi || ref). As loss terms, k3 gives grad KL(ref || pi) (GRPO's choice) and k1
    gives nothing, since E[grad log pi] = 0: k1 only works as a reward (Tang & Munos 2025).
    """
    return 0.5 * (logprobs - ref_logprobs) ** 2


class AdaptiveKLController:
    """Ziegler et al. 2019: beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon.

    The clip bounds how fast beta moves on one noisy KL reading; n_steps / horizon makes the
    adaptation rate independent of the batch size (n_steps = episodes seen since last update).
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"KL target ({target}) and horizon ({horizon}) must be positive")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict:
        """Plain numbers (JSON-serialisable) for an exact resume."""
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
        self.target = float(state["target"])
        self.horizon = int(state["horizon"])


class FixedKLController:
    """A constant beta with the controller interface; update is a no-op."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        del current_kl, n_steps

    def state_dict(self) -> dict:
        """Plain numbers (JSON-serialisable) for an exact resume."""
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
