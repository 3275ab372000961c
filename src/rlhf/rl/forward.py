"""The one forward pass over (query, response) shared by the rollout and every PPO epoch.

Rollout and training see identical inputs: left-padded queries, position ids from the
attention mask, logits divided by the sampling temperature, logits only where they predict a
response token.
"""

from __future__ import annotations

import torch

from rlhf.algo.logprobs import token_logprobs, token_logprobs_and_entropy
from rlhf.models import position_ids_from_mask, token_scores, unwrapped


def _joined(query_ids, query_mask, response_ids, response_mask):
    """Query and response side by side: (B, Q + R) ids, attention mask and position ids."""
    input_ids = torch.cat([query_ids, response_ids], dim=1)  # (B, Q + R)
    attention_mask = torch.cat([query_mask, response_mask], dim=1)  # (B, Q + R)
    return input_ids, attention_mask, position_ids_from_mask(attention_mask)


def _response_output(model, query_ids, query_mask, response_ids, response_mask, **extra):
    """The model's output with logits only at the (R,) positions that predict a response token
    (position t-1 predicts token t), and those positions."""
    input_ids, attention_mask, position_ids = _joined(query_ids, query_mask, response_ids,
                                                      response_mask)
    total, width = input_ids.shape[1], response_ids.shape[1]
    # Only the R positions that predict response tokens get full-vocabulary logits: not the
    # prompt's, and not the last position's (it predicts past the response).
    predicting = torch.arange(total - width - 1, total - 1, device=input_ids.device)  # (R,)
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=predicting, use_cache=False, **extra)
    return output, predicting


def response_logits(model, query_ids, query_mask, response_ids, response_mask) -> torch.Tensor:
    """(B, R, V) logits that predicted each response token (position t-1 predicts token t)."""
    return _response_output(model, query_ids, query_mask, response_ids, response_mask)[0].logits


def response_logprobs(model, query_ids, query_mask, response_ids, response_mask,
                      temperature: float, with_entropy: bool = False):
    """(B, R) log-probs of the response tokens under temperature-scaled logits (and entropy)."""
    logits = response_logits(model, query_ids, query_mask, response_ids, response_mask)
    if not with_entropy:
        return token_logprobs(logits, response_ids, temperature)
    return token_logprobs_and_entropy(logits, response_ids, temperature)  # entropy: no graph


def response_logprobs_and_values(model, query_ids, query_mask, response_ids, response_mask,
                                 temperature: float):
    """(B, R) log-probs, entropy and values from ONE forward pass of a policy with a value head
    on its backbone (`value_models.PolicyWithValueHead`): the value of the state before token t
    is read from the same hidden state whose logits predict token t."""
    output, predicting = _response_output(model, query_ids, query_mask, response_ids,
                                          response_mask, output_hidden_states=True)
    logprobs, entropy = token_logprobs_and_entropy(output.logits, response_ids, temperature)
    hidden = output.hidden_states[-1][:, predicting]  # (B, R, H)
    values = unwrapped(model).score(hidden).squeeze(-1).float()  # (B, R)
    return logprobs, entropy, values


def response_values(value_model, query_ids, query_mask, response_ids,
                    response_mask) -> torch.Tensor:
    """(B, R) value estimates V(s_t) for the state just before each response token.

    The value head reads the decoder's hidden state at position t-1, which has seen the query
    and the response up to t-1 only: values are causal (DESIGN.md).
    """
    input_ids, attention_mask, position_ids = _joined(query_ids, query_mask, response_ids,
                                                      response_mask)
    values = token_scores(value_model, input_ids, attention_mask, position_ids)  # (B, Q + R)
    return values[:, -response_ids.shape[1] - 1:-1]  # (B, R)
