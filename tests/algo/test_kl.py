"""kl: the k1, k2 and k3 estimators and the KL controllers."""

import json
import math

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k2, kl_k3

LOGP = torch.tensor([[-1.0, -2.0, -0.3]])
REF = torch.tensor([[-1.5, -1.0, -0.3]])


def test_k1_by_hand():
    # logp - ref: -1 + 1.5 = 0.5; -2 + 1 = -1 (k1 can be negative); equal -> 0
    assert_close(kl_k1(LOGP, REF), torch.tensor([[0.5, -1.0, 0.0]]))


def test_k3_by_hand():
    # log r = ref - logp = -0.5, 1, 0; k3 = (r - 1) - log r
    # e^-0.5 - 1 + 0.5 = 0.1065306597; e - 1 - 1 = 0.7182818285; 1 - 1 - 0 = 0
    expected = torch.tensor([[math.exp(-0.5) - 0.5, math.e - 2.0, 0.0]])
    assert_close(kl_k3(LOGP, REF), expected)


def test_k2_by_hand():
    # 0.5 * (logp - ref)^2: 0.5 * 0.25 = 0.125; 0.5 * 1 = 0.5; 0
    assert_close(kl_k2(LOGP, REF), torch.tensor([[0.125, 0.5, 0.0]]))


def test_k3_is_never_negative():
    generator = torch.Generator().manual_seed(0)
    logp = torch.randn(64, 32, generator=generator) * 3
    ref = torch.randn(64, 32, generator=generator) * 3
    assert (kl_k3(logp, ref) >= 0).all()
    assert (kl_k1(logp, ref) < 0).any()  # while k1 is, on some tokens


def test_k1_and_k3_are_unbiased_on_samples_from_the_policy():
    # KL(p || q) = sum p log(p / q) for p = (0.5, 0.3, 0.2), q = (0.2, 0.3, 0.5)
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    exact = float((p * (p / q).log()).sum())  # 0.2748872
    generator = torch.Generator().manual_seed(0)
    samples = torch.multinomial(p, 200_000, replacement=True, generator=generator)
    logp, ref = p.log()[samples], q.log()[samples]
    assert abs(float(kl_k1(logp, ref).mean()) - exact) < 0.01
    assert abs(float(kl_k3(logp, ref).mean()) - exact) < 0.01


@pytest.mark.parametrize(("current_kl", "expected"), [
    (6.6, 0.2 * (1 + 0.1 * 100 / 10_000)),  # 6.6 / 6 - 1 = 0.1 -> 0.2002
    (5.4, 0.2 * (1 - 0.1 * 100 / 10_000)),  # -0.1 -> 0.1998
    (12.0, 0.2 * (1 + 0.2 * 100 / 10_000)),  # 12 / 6 - 1 = 1, clipped to 0.2 -> 0.2004
    (0.0, 0.2 * (1 - 0.2 * 100 / 10_000)),  # -1, clipped to -0.2 -> 0.1996
    (6.0, 0.2),  # on target: unchanged
])
def test_adaptive_kl_update(current_kl, expected):
    controller = AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=10_000)
    controller.update(current_kl, n_steps=100)
    assert controller.value == pytest.approx(expected, rel=1e-12)


def test_adaptive_kl_moves_towards_target_over_many_updates():
    controller = AdaptiveKLController(0.2, target=6.0, horizon=1_000)
    for _ in range(10):
        controller.update(30.0, n_steps=64)  # clipped error 0.2 each time
    assert controller.value == pytest.approx(0.2 * (1 + 0.2 * 64 / 1_000) ** 10, rel=1e-12)


def test_adaptive_kl_state_dict_round_trip_resumes_exactly():
    controller = AdaptiveKLController(0.05, target=3.0, horizon=500)
    controller.update(4.0, n_steps=32)
    state = json.loads(json.dumps(controller.state_dict()))  # plain JSON numbers
    resumed = AdaptiveKLController(1.0, target=1.0, horizon=1)
    resumed.load_state_dict(state)
    for kl in (2.0, 5.0, 3.3):
        controller.update(kl, n_steps=32)
        resumed.update(kl, n_steps=32)
        assert resumed.value == controller.value


def test_adaptive_kl_rejects_a_non_positive_target_or_horizon():
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
    with pytest.raises(ValueError, match="horizon"):
        AdaptiveKLController(0.1, target=1.0, horizon=0)


def test_fixed_kl_controller():
    controller = FixedKLController(0.05)
    controller.update(100.0, n_steps=1_000)
    assert controller.value == 0.05
    resumed = FixedKLController(1.0)
    resumed.load_state_dict(json.loads(json.dumps(controller.state_dict())))
    assert resumed.value == 0.05


# -- the estimators as a per-token reward penalty (stop-gradient), on a small categorical -----
# A penalty used as a reward reaches the policy through the policy gradient: its expected
# gradient is E_{a~pi}[k(a) grad log pi(a)], summed here exactly over the 5 actions.


def _penalty_gradient(estimator, logits: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    logits = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(logits, dim=-1)
    penalty = estimator(logp, ref_logp).detach()  # a reward: no gradient through it
    surrogate = (logp.exp().detach() * penalty * logp).sum()  # E[k grad log pi] as a gradient
    (gradient,) = torch.autograd.grad(surrogate, logits)
    return gradient


def _exact_gradient(kl, logits: torch.Tensor) -> torch.Tensor:
    logits = logits.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(kl(torch.log_softmax(logits, dim=-1)), logits)
    return gradient


def _categorical(scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ref_logits = torch.randn(5, generator=generator, dtype=torch.float64)
    logits = ref_logits + scale * torch.randn(5, generator=generator, dtype=torch.float64)
    return logits, torch.log_softmax(ref_logits, dim=-1)


def test_k1_penalty_gradient_is_exactly_the_kl_gradient():
    logits, ref_logp = _categorical(scale=0.5)
    forward_kl = lambda logp: (logp.exp() * (logp - ref_logp)).sum()  # noqa: E731 KL(pi||ref)
    assert_close(_penalty_gradient(kl_k1, logits, ref_logp), _exact_gradient(forward_kl, logits))


def test_k3_penalty_gradient_is_the_difference_of_two_kl_gradients_and_small():
    """Tang & Munos (2025): as a reward, k3's expected gradient is grad KL(pi||ref) -
    grad KL(ref||pi), a few percent of the KL gradient near the reference."""
    logits, ref_logp = _categorical(scale=0.1)
    forward_kl = lambda logp: (logp.exp() * (logp - ref_logp)).sum()  # noqa: E731
    reverse_kl = lambda logp: (ref_logp.exp() * (ref_logp - logp)).sum()  # noqa: E731
    k3 = _penalty_gradient(kl_k3, logits, ref_logp)
    true = _exact_gradient(forward_kl, logits)
    assert_close(k3, true - _exact_gradient(reverse_kl, logits))
    assert k3.norm() < 0.1 * true.norm()  # barely a restoring force at all


def test_the_kl_estimator_setting_recommends_k1_and_says_why_k3_is_no_penalty():
    """Where users choose the estimator (`rlhf config ppo`, the field's docstring)."""
    from rlhf.config import PPOAlgoConfig
    from rlhf.config.docs import field_docs

    doc = " ".join(field_docs(PPOAlgoConfig)["kl_estimator"].split())
    assert "'k1'" in doc and "recommended" in doc and "Tang & Munos 2025" in doc
    assert "grad KL(pi || ref) - grad KL(ref || pi)" in doc


# -- the estimators as a loss term (gradient through them), on a small categorical -------------
# A loss term on samples y ~ pi is differentiated as it stands: its expected gradient is
# E_{y~pi}[grad k(log pi(y), log ref(y))], summed here exactly over the 5 outcomes with
# the sampling weights pi(y) held fixed.


def _loss_term_gradient(estimator, logits: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    logits = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(logits, dim=-1)
    expected_loss = (logp.exp().detach() * estimator(logp, ref_logp)).sum()
    (gradient,) = torch.autograd.grad(expected_loss, logits)
    return gradient


@pytest.mark.parametrize("scale", [0.1, 1.0])
def test_loss_terms_k2_gives_forward_kl_k3_reverse_kl_k1_nothing(scale):
    """Tang & Munos 2025: as a loss, k2 -> grad KL(pi||ref), k3 -> grad KL(ref||pi) (GRPO's
    term), k1 -> 0 since E[grad log pi] = 0."""
    logits, ref_logp = _categorical(scale)
    forward_kl = lambda logp: (logp.exp() * (logp - ref_logp)).sum()  # noqa: E731 KL(pi||ref)
    reverse_kl = lambda logp: (ref_logp.exp() * (ref_logp - logp)).sum()  # noqa: E731
    forward, reverse = _exact_gradient(forward_kl, logits), _exact_gradient(reverse_kl, logits)
    assert forward.norm() > 1e-3 and (forward - reverse).norm() > 1e-4  # a real difference
    assert_close(_loss_term_gradient(kl_k2, logits, ref_logp), forward, atol=1e-6, rtol=0)
    assert_close(_loss_term_gradient(kl_k3, logits, ref_logp), reverse, atol=1e-6, rtol=0)
    assert_close(_loss_term_gradient(kl_k1, logits, ref_logp), torch.zeros(5, dtype=torch.float64),
                 atol=1e-6, rtol=0)
