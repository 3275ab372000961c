"""The critic-free update on a fixed batch: micro-batches add up to the minibatch for every
aggregation rule, and a batch whose rows are all left out takes no step."""

import functools

import pytest
import torch
from test_ppo_parts import fake_rollout

from rlhf.algo.aggregation import sequence_mean, token_mean, token_sum
from rlhf.algo.kl import kl_k2
from rlhf.algo.losses import token_log_ratio
from rlhf.models import frozen_copy, load_policy
from rlhf.stages.critic_free.update import UpdateSettings, policy_update

RULES = {"sequence_mean": sequence_mean, "token_mean": token_mean,
         "token_sum": functools.partial(token_sum, divisor=6)}


def run_update(rule: str, micro_batch_size: int, *, keep_rows=(True,) * 4) -> dict:
    """One SGD step of the critic-free loss (clipped surrogate + 0.5 * k2) on 4 rows of
    lengths 6, 3, 6 and 1, whose reference differs from the policy (a non-zero KL gradient)."""
    from accelerate import Accelerator

    policy, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    rollout = fake_rollout(frozen_copy(policy), tokenizer)
    rollout.ref_logprobs = rollout.logprobs + torch.linspace(-0.5, 0.5, 6)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.25])[:, None].expand(4, 6)
    train_mask = rollout.response_mask & torch.tensor(keep_rows)[:, None]
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = UpdateSettings(
        epochs=1, per_minibatch=4, micro_batch_size=micro_batch_size, clip_low=0.2,
        clip_high=0.28, log_ratio=token_log_ratio, aggregate=RULES[rule], kl_loss=kl_k2,
        kl_coef=0.5, temperature=1.0, max_grad_norm=0.0)
    stats, outcomes = policy_update(policy, optimizer, scheduler, Accelerator(cpu=True),
                                    rollout, advantages, train_mask, settings)
    return {"policy": policy.state_dict(), "stats": stats, "outcomes": outcomes}


@pytest.mark.parametrize("rule", RULES)
def test_micro_batches_add_up_to_the_minibatch(rule: str) -> None:
    """Rows of 6, 3, 6 and 1 tokens, all at once or one at a time: the same loss, gradient
    norm and step, whatever the rule (each micro-batch's share of the minibatch's normaliser)."""
    whole, single = run_update(rule, 4), run_update(rule, 1)
    assert whole["outcomes"] == single["outcomes"] == ["stepped"]
    for key in ("loss/policy", "loss/kl", "policy/grad_norm", "policy/entropy",
                "policy/approx_kl"):
        assert single["stats"][key] == pytest.approx(whole["stats"][key], rel=1e-5, abs=1e-7)
    for key, tensor in whole["policy"].items():
        torch.testing.assert_close(tensor, single["policy"][key], atol=1e-6, rtol=1e-5)


def test_the_rules_weigh_rows_differently() -> None:
    """The same rows give three different losses: the rules are not the same in disguise."""
    losses = {rule: run_update(rule, 4)["stats"]["loss/policy"] for rule in RULES}
    assert len({round(value, 6) for value in losses.values()}) == 3, losses


def test_a_minibatch_with_every_row_left_out_takes_no_step() -> None:
    untouched = load_policy("builtin:tiny-gpt2", seed=0)[0].state_dict()
    dropped = run_update("token_mean", 2, keep_rows=(False,) * 4)
    assert dropped["outcomes"] == [] and dropped["stats"] == {}
    assert all(torch.equal(t, untouched[k]) for k, t in dropped["policy"].items())
