"""Batched sampling from a causal LM over left-padded prompts, with a KV cache.

We sample with our own short loop instead of `model.generate`: the only change to the model's
distribution is the temperature, so the log-probs recomputed later from temperature-scaled
logits are exactly those of the sampling distribution (no default top-k, repetition penalty or
min-length processor sneaking in from a hub generation_config.json; N+ implementation details
of RLHF with PPO, Huang et al. 2024). Rows stop at their first stop token; the loop ends when
every row has stopped or `max_new_tokens` is reached.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from rlhf.models import position_ids_from_mask


@torch.no_grad()
def sample_responses(
    model: torch.nn.Module,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    stop_token_ids: Sequence[int],
    pad_id: int,
) -> torch.Tensor:
    """(B, R) sampled response ids, R <= max_new_tokens; `pad_id` after a row's stop token.

    `query_ids` (B, Q) are left-padded and `query_mask` (B, Q) is True on real tokens. Position
    ids come from the mask, so a padded prompt is continued exactly as it would be alone.
    Temperature 0 means greedy decoding.
    """
    stops = torch.tensor(list(stop_token_ids), device=query_ids.device)
    attention = query_mask.long()  # (B, Q + t)
    positions = position_ids_from_mask(query_mask)  # (B, Q)
    output = model(input_ids=query_ids, attention_mask=attention, position_ids=positions,
                   use_cache=True, logits_to_keep=1)
    next_position = positions[:, -1:] + 1  # (B, 1)
    done = torch.zeros(len(query_ids), dtype=torch.bool, device=query_ids.device)  # (B,)
    tokens = []
    for _ in range(max_new_tokens):
        token = _draw(output.logits[:, -1], temperature)  # (B,)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        tokens.append(token)
        done |= torch.isin(token, stops)
        if bool(done.all()) or len(tokens) == max_new_tokens:
            break
        attention = torch.cat([attention, attention.new_ones(len(token), 1)], dim=1)
        with warnings.catch_warnings():
            # transformers 5.2x renames `past_key_values` to `cache` (old name works until
            # 5.40); older releases only know the old name, so we keep it and stay quiet.
            warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated")
            output = model(input_ids=token[:, None], attention_mask=attention,
                           position_ids=next_position, past_key_values=output.past_key_values,
                           use_cache=True)
        next_position = next_position + 1
    return torch.stack(tokens, dim=1)  # (B, R)


def _draw(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """One token per row from softmax(logits / T); argmax when T == 0."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    return torch.multinomial(probabilities, num_samples=1).squeeze(1)


def generate_file(model_path: str, prompts_path: str, output_path: str, *, template: str,
                  max_new_tokens: int, temperature: float, batch_size: int,
                  max_prompt_tokens: int, seed: int = 0) -> int:
    """`rlhf generate`: answer every prompt of a file; one JSON line per prompt."""
    import json

    from rlhf.data.prompts import left_pad, load_prompts
    from rlhf.models import load_policy

    torch.manual_seed(seed)
    model, tokenizer = load_policy(model_path)
    model.eval()
    prompts, prompt_ids = load_prompts(prompts_path, template=template, tokenizer=tokenizer,
                                       max_prompt_tokens=max_prompt_tokens)
    stops = [tokenizer.eos_token_id]
    with open(output_path, "w", encoding="utf-8") as handle:
        for start in range(0, len(prompt_ids), batch_size):
            query_ids, query_mask = left_pad(prompt_ids[start:start + batch_size],
                                             tokenizer.pad_token_id)
            responses = sample_responses(model, query_ids, query_mask,
                                         max_new_tokens=max_new_tokens, temperature=temperature,
                                         stop_token_ids=stops, pad_id=tokenizer.pad_token_id)
            for offset, ids in enumerate(responses.tolist()):
                kept = ids[:ids.index(stops[0])] if stops[0] in ids else ids
                handle.write(json.dumps({"prompt": prompts.prompts[start + offset],
                                         "response": tokenizer.decode(kept,
                                                                      skip_special_tokens=True)},
                                        ensure_ascii=False) + "\n")
    return len(prompt_ids)
