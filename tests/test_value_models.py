"""The shared-trunk value head (model.value=shared): one forward pass gives the policy's
log-probs and the values, equal to what the two separate readings give."""

import pytest
import torch

from rlhf.config import PPOConfig, load_config
from rlhf.errors import UserError
from rlhf.models import load_policy
from rlhf.rl.forward import response_logprobs, response_values
from rlhf.stages.ppo.update import shared_forward
from rlhf.value_models import PolicyWithValueHead


def test_one_forward_pass_gives_the_log_probs_and_the_values() -> None:
    lm, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    model = PolicyWithValueHead(lm, seed=0)
    generator = torch.Generator().manual_seed(0)
    query_ids = torch.randint(len(tokenizer), (3, 5), generator=generator)
    response_ids = torch.randint(len(tokenizer), (3, 4), generator=generator)
    query_mask = torch.ones(3, 5, dtype=torch.bool)
    query_mask[1, :3] = False  # left padding
    response_mask = torch.ones(3, 4, dtype=torch.bool)
    response_mask[2, 2:] = False
    rows = (query_ids, query_mask, response_ids, response_mask)
    calls = []
    lm.register_forward_hook(lambda *_: calls.append(1))
    logprobs, entropy, values = shared_forward(model, model, *rows, temperature=0.7)
    assert len(calls) == 1
    torch.testing.assert_close(logprobs, response_logprobs(model, *rows, 0.7))
    torch.testing.assert_close(values, response_values(model, *rows))
    assert values.shape == (3, 4) and entropy.shape == (3, 4)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"score.weight", "score.bias"} <= trained


def test_a_shared_head_cannot_start_from_the_reward_model() -> None:
    base = ["data.path=x", "model.policy=p", "model.reward=m:f", "model.value=shared"]
    with pytest.raises(UserError, match="model.value_init"):
        load_config(PPOConfig, None, [*base, "model.value_init=reward"])
    with pytest.raises(UserError, match="model.value"):
        load_config(PPOConfig, None, [*base[:3], "model.value=both"])
    with pytest.raises(UserError, match="lora.quantize"):  # 4-bit needs the shared head
        load_config(PPOConfig, None, [*base[:3], "lora.r=8", "lora.quantize=4bit"])
