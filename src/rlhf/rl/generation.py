"""Batched sampling from a causal LM over left-padded prompts, with a KV cache.

We sample with our own short loop instead of `model.generate`: the only change to the model's
distribution is the temperature, so the log-probs recomputed later from temperature-scaled
logits are exactly those of the sampling distribution (no default top-k, repetition penalty or
min-length processor sneaking in from a hub generation_config.json; N+ implementation details
of RLHF with PPO, Huang et al. 2024). Rows stop at their first stop token; the loop ends when
every row has stopped or `max_new_tokens` is reached.

Sampling is the Gumbel-max trick, argmax(logits / T + Gumbel noise), which draws exactly from
softmax(logits / T). Given `row_seeds`, each row's noise comes from its own generator, so a
prompt gets the same sample whatever else is in its batch: results do not depend on the number
of processes or on how a batch is cut into chunks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from rlhf.errors import UserError
from rlhf.models import position_ids_from_mask


@torch.no_grad()
def sample_responses(
    model: torch.nn.Module,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    max_new_tokens: int | Sequence[int],
    temperature: float,
    stop_token_ids: Sequence[int],
    pad_id: int,
    row_seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """(B, R) sampled response ids, R <= max_new_tokens; `pad_id` after a row's stop token or
    length limit.

    `query_ids` (B, Q) are left-padded and `query_mask` (B, Q) is True on real tokens. Position
    ids come from the mask, so a padded prompt is continued exactly as it would be alone.
    `max_new_tokens` is one limit for every row or one per row (trl 0.11.4's per-sample
    LengthSampler); build the response mask from the same limits (`masking.within_lengths`).
    Temperature 0 means greedy decoding. `row_seeds` (B,) seeds each row's sampling noise;
    without them the noise comes from torch's global generator.
    """
    generators = None if row_seeds is None else [
        torch.Generator(device=query_ids.device).manual_seed(int(seed)) for seed in row_seeds]
    stops = torch.tensor(list(stop_token_ids), device=query_ids.device)
    limits = torch.as_tensor(max_new_tokens, device=query_ids.device).expand(len(query_ids))
    attention = query_mask.long()  # (B, Q + t)
    positions = position_ids_from_mask(query_mask)  # (B, Q)
    output = model(input_ids=query_ids, attention_mask=attention, position_ids=positions,
                   use_cache=True, logits_to_keep=1)
    next_position = positions[:, -1:] + 1  # (B, 1)
    done = torch.zeros(len(query_ids), dtype=torch.bool, device=query_ids.device)  # (B,)
    tokens = []
    for step in range(int(limits.max())):
        token = _draw(output.logits[:, -1], temperature, generators)  # (B,)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        tokens.append(token)
        done |= torch.isin(token, stops) | (limits <= step + 1)
        if bool(done.all()):
            break
        attention = torch.cat([attention, attention.new_ones(len(token), 1)], dim=1)
        output = model(input_ids=token[:, None], attention_mask=attention,
                       position_ids=next_position, use_cache=True, **_kv_cache(output))
        next_position = next_position + 1
    return torch.stack(tokens, dim=1)  # (B, R)


def _kv_cache(output) -> dict:
    """The output's KV cache under the keyword the next call takes: `cache` since transformers
    5.2x renamed it (the old name still works there but warns on every call), and
    `past_key_values` in the older releases we support. A ModelOutput's keys are its set
    fields, so asking for "cache" never touches the deprecated name."""
    if "cache" in output.keys():
        return {"cache": output["cache"]}
    return {"past_key_values": output["past_key_values"]}


def _draw(logits: torch.Tensor, temperature: float,
          generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """One token per row from softmax(logits / T) by Gumbel-max; argmax when T == 0."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    if generators is None:
        uniform = torch.rand(logits.shape, device=logits.device)  # (B, V)
    else:
        uniform = torch.stack([torch.rand(logits.shape[-1], generator=g, device=logits.device)
                               for g in generators])  # (B, V), row i from generator i
    gumbel = -torch.log(-torch.log(uniform))  # U = 0 gives -inf: never chosen
    return (logits.float() / temperature + gumbel).argmax(dim=-1)


def row_seed(*keys: int | str) -> int:
    """A 63-bit seed from keys (e.g. run seed, iteration, prompt index; a leading name keeps
    streams for different purposes apart); distinct keys give unrelated seeds (a hash, not a
    sum, so (1, 2) and (2, 1) do not collide)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def stop_token_ids(tokenizer, stop_token: str | None) -> list[int]:
    """EOS plus the configured stop token, which must be a single token of the policy."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if stop_token is not None:
        ids = tokenizer.encode(stop_token, add_special_tokens=False)
        if len(ids) != 1:
            raise UserError(f"generate.stop_token {stop_token!r} is {len(ids)} tokens for the "
                            "policy's tokenizer; it must be exactly one")
        stops.append(ids[0])
    if not stops:
        raise UserError("the policy's tokenizer has no EOS token; set generate.stop_token")
    return stops
