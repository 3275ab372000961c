"""preference: DPO, conservative and robust DPO, IPO and SimPO by hand, against a slow loop,
and on their invariants; sequence log-probs over a response mask."""

import dataclasses
import math

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.preference import (
    dpo_loss,
    implicit_rewards,
    ipo_loss,
    robust_dpo_loss,
    sequence_logprobs,
    simpo_loss,
)
from rlhf.algo.types import PreferenceStats


def _softplus(x):
    return math.log1p(math.exp(x))


def _assert_detached(stats):
    for value in vars(stats).values():
        assert value.dim() == 0 and not value.requires_grad


# Three pairs, beta = 0.5; h = (pi_c - ref_c) - (pi_r - ref_r):
#   pi_c  pi_r  ref_c  ref_r   h                          beta h
#   -3    -6    -5     -4      (-3 + 5) - (-6 + 4) = 4     2
#   -3    -2    -3     -4      0 - 2 = -2                 -1
#   -1    -1    -2     -2      1 - 1 = 0                   0   (a tie)
# -log sigmoid(x) = softplus(-x): softplus(-2) = 0.1269280110, softplus(1) = 1.3132616875,
# softplus(0) = ln 2 = 0.6931471806.
PI_C = torch.tensor([-3.0, -3.0, -1.0])
PI_R = torch.tensor([-6.0, -2.0, -1.0])
REF_C = torch.tensor([-5.0, -3.0, -2.0])
REF_R = torch.tensor([-4.0, -4.0, -2.0])
BETA = 0.5
DPO = (0.1269280110 + 1.3132616875 + 0.6931471806) / 3  # 0.7111122930


def test_dpo_by_hand_with_stats():
    # chosen rewards 0.5 * (pi_c - ref_c) = (1, 0, 0.5): mean 0.5
    # rejected rewards 0.5 * (pi_r - ref_r) = (-1, 1, 0.5): mean 1/6
    # margins (2, -1, 0): mean 1/3; accuracy: only pair 0 wins, the tie counts as wrong: 1/3
    # chosen log-probs mean -7/3, rejected -3
    loss, stats = dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=BETA)
    assert_close(loss, torch.tensor(DPO))
    assert_close(loss, torch.tensor(0.7111122930))
    expected = {"loss": DPO, "chosen_reward": 0.5, "rejected_reward": 1 / 6, "accuracy": 1 / 3,
                "margin_mean": 1 / 3, "chosen_logprob": -7 / 3, "rejected_logprob": -3.0}
    got = stats.as_dict()
    assert got.keys() == expected.keys()
    assert all(math.isclose(got[k], v, rel_tol=1e-6) for k, v in expected.items()), got
    assert isinstance(stats, PreferenceStats)


def test_conservative_dpo_by_hand():
    # (1 - e) softplus(-x) + e softplus(x) = softplus(-x) + e x, as softplus(x) - softplus(-x) = x
    # e = 0.1, x = (2, -1, 0): DPO + 0.1 * (2 - 1 + 0) / 3 = 0.7111122930 + 0.0333333333
    loss, _ = dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=BETA, label_smoothing=0.1)
    assert_close(loss, torch.tensor(DPO + 0.1 / 3))
    assert_close(loss, torch.tensor(0.7444456264))


def test_robust_dpo_by_hand():
    # ((1 - e) softplus(-x) - e softplus(x)) / (1 - 2e) = softplus(-x) - e x / (1 - 2e)
    # e = 0.1: e / (1 - 2e) = 1/8; DPO - (2 - 1 + 0) / 8 / 3 = 0.7111122930 - 0.0416666667
    loss, stats = robust_dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=BETA, label_smoothing=0.1)
    assert_close(loss, torch.tensor(DPO - 1 / 24))
    assert_close(loss, torch.tensor(0.6694456264))
    assert_close(stats.accuracy, torch.tensor(1 / 3))


def test_ipo_by_hand():
    # target 1 / (2 beta) = 1; h = (4, -2, 0): ((4 - 1)^2 + (-2 - 1)^2 + (0 - 1)^2) / 3 = 19/3
    loss, stats = ipo_loss(PI_C, PI_R, REF_C, REF_R, beta=BETA)
    assert_close(loss, torch.tensor(19 / 3))
    assert_close(stats.margin_mean, torch.tensor(1 / 3))  # the same implicit rewards as DPO


def test_simpo_by_hand():
    # beta 2, gamma 1; x = beta (avg_c - avg_r) - gamma
    #   avg_c  avg_r   x                   -log sigmoid(x)
    #   -1.0   -1.5    2 * 0.5 - 1 = 0     ln 2 = 0.6931471806
    #   -0.5   -2.0    2 * 1.5 - 1 = 2     softplus(-2) = 0.1269280110
    #   -2.0   -1.0    2 * -1 - 1 = -3     softplus(3) = 3.0485873516
    # rewards beta * avg: chosen (-2, -1, -4) mean -7/3, rejected (-3, -4, -2) mean -3
    # margins (1, 3, -2) mean 2/3; accuracy 2/3 (pair 0 wins although its loss is ln 2)
    loss, stats = simpo_loss(torch.tensor([-1.0, -0.5, -2.0]), torch.tensor([-1.5, -2.0, -1.0]),
                             beta=2.0, gamma=1.0)
    assert_close(loss, torch.tensor((0.6931471806 + 0.1269280110 + 3.0485873516) / 3))
    expected = {"chosen_reward": -7 / 3, "rejected_reward": -3.0, "accuracy": 2 / 3,
                "margin_mean": 2 / 3, "chosen_logprob": -7 / 6, "rejected_logprob": -1.5}
    got = stats.as_dict()
    assert all(math.isclose(got[k], v, rel_tol=1e-6) for k, v in expected.items()), got


def _loop_losses(pc, pr, rc, rr, beta, eps):
    """The slow reference: each pair's loss from the formulas, one at a time, in Python floats."""
    def log_sigmoid(x):
        return -_softplus(-x) if x > -30 else x
    out = {"dpo": 0.0, "cdpo": 0.0, "robust": 0.0, "ipo": 0.0}
    for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), strict=True):
        h = (a - c) - (b - d)
        out["dpo"] += -log_sigmoid(beta * h)
        out["cdpo"] += -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)
        out["robust"] += ((-(1 - eps) * log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h))
                          / (1 - 2 * eps))
        out["ipo"] += (h - 1 / (2 * beta)) ** 2
    return {name: total / len(pc) for name, total in out.items()}


def test_every_loss_matches_the_slow_loop():
    generator = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-10 * torch.rand(7, generator=generator, dtype=torch.float64)
                      for _ in range(4))
    expected = _loop_losses(pc, pr, rc, rr, beta=0.3, eps=0.2)
    got = {"dpo": dpo_loss(pc, pr, rc, rr, beta=0.3)[0],
           "cdpo": dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.2)[0],
           "robust": robust_dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.2)[0],
           "ipo": ipo_loss(pc, pr, rc, rr, beta=0.3)[0]}
    for name, value in got.items():
        assert math.isclose(float(value), expected[name], rel_tol=1e-12), name


# ---- relations between the losses ---------------------------------------------------------


def _random_pairs(seed, n=6):
    generator = torch.Generator().manual_seed(seed)
    return [-20 * torch.rand(n, generator=generator, dtype=torch.float64) for _ in range(4)]


def test_no_smoothing_is_plain_dpo_and_reference_free_is_zero_reference():
    pc, pr, rc, rr = _random_pairs(1)
    plain, plain_stats = dpo_loss(pc, pr, rc, rr, beta=0.1)
    assert_close(dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.0)[0], plain)
    robust, robust_stats = robust_dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.0)
    assert_close(robust, plain)
    assert robust_stats.as_dict() == plain_stats.as_dict()
    # reference-free DPO: a uniform reference, i.e. zero reference log-probs
    zeros = torch.zeros_like(pc)
    free, free_stats = dpo_loss(pc, pr, zeros, zeros, beta=0.1)
    assert_close(free, -torch.nn.functional.logsigmoid(0.1 * (pc - pr)).mean())
    assert_close(free_stats.chosen_reward, 0.1 * pc.mean())


@pytest.mark.parametrize("eps", [0.1, 0.3, 0.45])
def test_robust_loss_is_unbiased_under_label_flips(eps):
    # A flip swaps chosen and rejected (policy and reference alike), so h -> -h. Over flips with
    # probability eps: eps * robust(flipped) + (1 - eps) * robust(clean) = dpo(clean).
    pc, pr, rc, rr = _random_pairs(2)
    clean, _ = robust_dpo_loss(pc, pr, rc, rr, beta=0.2, label_smoothing=eps)
    flipped, _ = robust_dpo_loss(pr, pc, rr, rc, beta=0.2, label_smoothing=eps)
    dpo, _ = dpo_loss(pc, pr, rc, rr, beta=0.2)
    assert_close(eps * flipped + (1 - eps) * clean, dpo)
    # conservative DPO is not unbiased: the same expectation differs from the clean loss
    c_clean, _ = dpo_loss(pc, pr, rc, rr, beta=0.2, label_smoothing=eps)
    c_flipped, _ = dpo_loss(pr, pc, rr, rc, beta=0.2, label_smoothing=eps)
    assert not torch.isclose(eps * c_flipped + (1 - eps) * c_clean, dpo)


def test_smoothing_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        robust_dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=BETA, label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=BETA, label_smoothing=-0.1)
    with pytest.raises(ValueError, match="equal shape"):
        dpo_loss(PI_C, PI_R[:2], REF_C, REF_R, beta=BETA)


def test_ipo_minimum_is_at_h_equal_one_over_two_beta():
    # only the chosen policy log-prob moves: h = pi_c + 3 here (ref_c = -1, pi_r = -2, ref_r = 0)
    beta = 0.25  # target h = 2
    grid = torch.linspace(-6.0, 4.0, 1001, dtype=torch.float64)  # pi_c values, step 0.01
    losses = torch.stack([ipo_loss(x[None], torch.tensor([-2.0], dtype=torch.float64),
                                   torch.tensor([-1.0], dtype=torch.float64),
                                   torch.tensor([0.0], dtype=torch.float64), beta=beta)[0]
                          for x in grid])
    assert math.isclose(float(grid[losses.argmin()]) + 3.0, 2.0, abs_tol=1e-9)
    assert float(losses.min()) < 1e-20
    policy_chosen = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)  # h = 2
    loss, _ = ipo_loss(policy_chosen, torch.tensor([-2.0], dtype=torch.float64),
                       torch.tensor([-1.0], dtype=torch.float64),
                       torch.tensor([0.0], dtype=torch.float64), beta=beta)
    loss.backward()
    assert float(policy_chosen.grad) == 0.0


def test_simpo_margin_shifts_the_decision_point():
    # loss ln 2 where beta (avg_c - avg_r) = gamma: here avg_c - avg_r = gamma / beta = 0.25
    chosen, rejected = torch.tensor([-1.0]), torch.tensor([-1.25])
    at_margin, _ = simpo_loss(chosen, rejected, beta=2.0, gamma=0.5)
    assert_close(at_margin, torch.tensor(math.log(2)))
    no_margin, _ = simpo_loss(rejected, rejected, beta=2.0, gamma=0.0)
    assert_close(no_margin, torch.tensor(math.log(2)))
    # the same win with gamma 0 costs less than ln 2; a larger gamma makes it a loss
    won, _ = simpo_loss(chosen, rejected, beta=2.0, gamma=0.0)
    lost, _ = simpo_loss(chosen, rejected, beta=2.0, gamma=1.0)
    assert float(won) < math.log(2) < float(lost)


# ---- gradients, invariants, stability ------------------------------------------------------


def test_raising_the_chosen_log_prob_lowers_the_loss_and_the_reference_gets_no_gradient():
    for loss_fn, kwargs in ((dpo_loss, {}), (dpo_loss, {"label_smoothing": 0.1}),
                            (robust_dpo_loss, {"label_smoothing": 0.1})):
        pc, pr = PI_C.clone().requires_grad_(True), PI_R.clone().requires_grad_(True)
        rc = REF_C.clone().requires_grad_(True)
        loss, stats = loss_fn(pc, pr, rc, REF_R, beta=BETA, **kwargs)
        loss.backward()
        assert bool((pc.grad < 0).all()) and bool((pr.grad > 0).all())
        assert rc.grad is None or bool((rc.grad == 0).all())
        assert loss.requires_grad
        _assert_detached(stats)
    # DPO's gradient by hand: d/d pi_c of softplus(-beta h) / B = -beta sigmoid(-beta h) / B
    pc = PI_C.clone().requires_grad_(True)
    dpo_loss(pc, PI_R, REF_C, REF_R, beta=BETA)[0].backward()
    assert_close(pc.grad, -BETA * torch.sigmoid(-BETA * torch.tensor([4.0, -2.0, 0.0])) / 3)
    avg_c = torch.tensor([-1.0, -2.0], requires_grad=True)
    simpo_loss(avg_c, torch.tensor([-1.5, -1.0]), beta=2.0, gamma=0.5)[0].backward()
    assert bool((avg_c.grad < 0).all())


def test_losses_depend_only_on_differences():
    pc, pr, rc, rr = _random_pairs(3)
    shift = torch.tensor(7.5, dtype=torch.float64)
    for loss_fn, kwargs in ((dpo_loss, {}), (robust_dpo_loss, {"label_smoothing": 0.2}),
                            (ipo_loss, {})):
        base, _ = loss_fn(pc, pr, rc, rr, beta=0.3, **kwargs)
        for moved in ((pc + shift, pr + shift, rc, rr), (pc, pr, rc - shift, rr - shift),
                      (pc + shift, pr, rc + shift, rr)):
            assert_close(loss_fn(*moved, beta=0.3, **kwargs)[0], base)
    base, _ = simpo_loss(pc, pr, beta=2.0, gamma=0.5)
    assert_close(simpo_loss(pc - shift, pr - shift, beta=2.0, gamma=0.5)[0], base)


def test_large_margins_give_finite_losses_and_gradients():
    h = torch.tensor([1e4, -1e4, 0.0])  # with zero reference log-probs, pi_c - pi_r = h
    for loss_fn, kwargs in ((dpo_loss, {}), (dpo_loss, {"label_smoothing": 0.1}),
                            (robust_dpo_loss, {"label_smoothing": 0.1}), (ipo_loss, {})):
        pc = h.clone().requires_grad_(True)
        pr = torch.zeros(3, requires_grad=True)
        loss, _ = loss_fn(pc, pr, torch.zeros(3), torch.zeros(3), beta=1.0, **kwargs)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pc.grad).all(), loss_fn
    # DPO at beta h = -1e4 is 1e4 with slope -1 per pair: log(sigmoid(x)) would give inf
    pc = h.clone().requires_grad_(True)
    loss, _ = dpo_loss(pc, torch.zeros(3), torch.zeros(3), torch.zeros(3), beta=1.0)
    loss.backward()
    assert_close(loss, torch.tensor((0.0 + 1e4 + math.log(2)) / 3))
    assert_close(pc.grad, torch.tensor([0.0, -1.0, -0.5]) / 3)
    avg = torch.tensor([1e4, -1e4], requires_grad=True)
    loss, _ = simpo_loss(avg, torch.zeros(2), beta=1.0, gamma=0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(avg.grad).all()


def test_micro_batches_weighted_by_pair_share_equal_the_whole_batch():
    pc, pr, rc, rr = _random_pairs(4, n=8)

    def grad_of(batches):
        policy = torch.stack([pc, pr]).clone().requires_grad_(True)  # (2, B)
        for rows in batches:
            loss, _ = dpo_loss(policy[0, rows], policy[1, rows], rc[rows], rr[rows], beta=0.1)
            (loss * len(rows) / 8).backward()
        return policy.grad

    assert_close(grad_of([torch.arange(4, 8), torch.arange(0, 4)]), grad_of([torch.arange(8)]))
    assert_close(grad_of([torch.arange(i, i + 2) for i in range(0, 8, 2)]),
                 grad_of([torch.arange(8)]))


def test_inputs_are_not_mutated():
    inputs = _random_pairs(5)
    copies = [x.clone() for x in inputs]
    dpo_loss(*inputs, beta=0.1, label_smoothing=0.1)
    robust_dpo_loss(*inputs, beta=0.1, label_smoothing=0.1)
    ipo_loss(*inputs, beta=0.1)
    simpo_loss(inputs[0], inputs[1], beta=2.0, gamma=0.5)
    assert all(torch.equal(x, c) for x, c in zip(inputs, copies, strict=True))


def test_implicit_rewards_and_stats_fields():
    assert_close(implicit_rewards(PI_C, REF_C, 0.5), torch.tensor([1.0, 0.0, 0.5]))
    assert [f.name for f in dataclasses.fields(PreferenceStats)] == [
        "loss", "chosen_reward", "rejected_reward", "accuracy", "margin_mean",
        "chosen_logprob", "rejected_logprob"]


# ---- sequence log-probs ---------------------------------------------------------------------


def test_sequence_logprobs_by_hand_and_garbage_under_the_mask():
    # row 0: response tokens at 1, 2 (-0.5, -1.5): sum -2, mean -1
    # row 1: one response token (-3): sum -3, mean -3; row 2: none: 0 and 0
    nan = float("nan")
    token_logprobs = torch.tensor([[nan, -0.5, -1.5, nan], [-9.0, nan, -3.0, nan],
                                   [nan, nan, nan, nan]], requires_grad=True)
    mask = torch.tensor([[False, True, True, False], [False, False, True, False],
                         [False, False, False, False]])
    sums, means = sequence_logprobs(token_logprobs, mask)
    assert_close(sums, torch.tensor([-2.0, -3.0, 0.0]))
    assert_close(means, torch.tensor([-1.0, -3.0, 0.0]))
    (sums.sum() + means.sum()).backward()
    expected = torch.tensor([[0.0, 1.5, 1.5, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0] * 4])
    assert_close(token_logprobs.grad, expected)
