"""Log-probs of right-padded (prompt + response) sequences under a causal LM: the one forward of
the supervised stages that train a policy (SFT, DPO)."""

from __future__ import annotations

import torch

from rlhf.algo.logprobs import token_logprobs
from rlhf.models import position_ids_from_mask


def next_token_logprobs(model, inputs: dict[str, torch.Tensor],
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T - 1) log p(token_t | tokens_<t) and the matching (B, T - 1) response mask.

    The logits at position t - 1 predict token t. Position ids come from the attention mask
    (right padding, so they are 0..n-1 on real tokens either way; explicit for any layout).
    """
    input_ids = inputs["input_ids"].to(device)  # (B, T)
    attention_mask = inputs["attention_mask"].to(device)  # (B, T)
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(),
                   position_ids=position_ids_from_mask(attention_mask),
                   use_cache=False).logits  # (B, T, V)
    logprobs = token_logprobs(logits[:, :-1], input_ids[:, 1:])  # (B, T - 1)
    return logprobs, inputs["response_mask"][:, 1:].to(device)
