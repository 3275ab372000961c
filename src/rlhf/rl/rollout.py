"""One batch of experience: sample responses, then log-probs, reference log-probs, values and
scores, all over the same (query, response) tensors (`rl.forward`), and joining and gathering
batches of experience.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from rlhf.algo.masking import response_mask_after_stop, within_lengths
from rlhf.algo.types import Rollout
from rlhf.data.batching import left_pad
from rlhf.rl.forward import response_logprobs, response_logprobs_and_values, response_values
from rlhf.rl.generation import sample_responses


@dataclass
class Texts:
    """The decoded prompt and response text that the scorer reads."""

    prompts: list[str]
    responses: list[str]


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor,
                     stop_token_ids: Sequence[int]) -> list[str]:
    """Response text up to (not including) the first stop token."""
    stops = set(stop_token_ids)
    texts = []
    for ids, mask in zip(response_ids.tolist(), response_mask.tolist(), strict=True):
        kept = [t for t, real in zip(ids, mask, strict=True) if real and t not in stops]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True))
    return texts


@torch.no_grad()
def sample_texts(model, tokenizer, rows: list[list[int]], seeds: Sequence[int], *,
                 max_new_tokens: int, temperature: float, stop_token_ids: Sequence[int],
                 batch_size: int | None = None) -> list[str]:
    """One sampled response text (up to its first stop token) per row of prompt ids, on the
    model's device, `batch_size` rows at a time (all at once when None); row i draws its noise
    from `seeds[i]` alone (`sample_responses`), so the texts do not depend on the batching."""
    device = next(model.parameters()).device
    batch_size = batch_size or len(rows)
    texts: list[str] = []
    for start in range(0, len(rows), batch_size):
        query_ids, query_mask = left_pad(rows[start:start + batch_size], tokenizer.pad_token_id)
        responses = sample_responses(
            model, query_ids.to(device), query_mask.to(device), max_new_tokens=max_new_tokens,
            temperature=temperature, stop_token_ids=stop_token_ids,
            pad_id=tokenizer.pad_token_id, row_seeds=seeds[start:start + batch_size])  # (B, R)
        mask = response_mask_after_stop(responses, list(stop_token_ids))
        texts += decode_responses(tokenizer, responses.cpu(), mask.cpu(), stop_token_ids)
    return texts


@torch.no_grad()
def collect_rollout(policy, reference, value_model, scorer: Callable, *, query_ids, query_mask,
                    score_prompts: list[str], tokenizer, max_new_tokens: int | Sequence[int],
                    temperature: float,
                    stop_token_ids: Sequence[int], row_seeds: Sequence[int] | None = None,
                    timings: dict[str, float] | None = None) -> tuple[Rollout, Texts]:
    """Sample a response per prompt and compute everything an RL update needs about it.

    The score is computed on the text truncated at the first stop token; `score_prompts` is the
    prompt text the reward model should see (the rendered prompt or the raw instruction).
    `max_new_tokens` is one length limit or one per row; `row_seeds` seed each row's sampling
    (see `sample_responses`). Seconds spent per phase are added to `timings` (generate,
    forward, score). Run it under the autocast context the trained models use, so that
    every forward here (value and score heads included) has the update's precision.
    Without a `reference` (a run with no KL term) `ref_logprobs` is None; without a
    `value_model` the values are zeros.
    """
    timings = {} if timings is None else timings
    clock = _Clock(timings)
    policy.eval()
    with clock("time/generate"):
        response_ids = sample_responses(
            policy, query_ids, query_mask, max_new_tokens=max_new_tokens,
            temperature=temperature, stop_token_ids=stop_token_ids,
            pad_id=tokenizer.pad_token_id, row_seeds=row_seeds)  # (B, R)
    limits = torch.as_tensor(max_new_tokens, device=response_ids.device).expand(len(query_ids))
    response_mask = (response_mask_after_stop(response_ids, list(stop_token_ids))
                     & within_lengths(limits, response_ids.shape[1]))  # (B, R)
    args = (query_ids, query_mask, response_ids, response_mask)
    with clock("time/forward"):
        logprobs, values = _policy_and_values(policy, value_model, args, temperature)
        ref_logprobs = response_logprobs(reference, *args, temperature) \
            if reference is not None else None  # (B, R); a run without a KL term has none
    with clock("time/score"):
        responses = decode_responses(tokenizer, response_ids, response_mask, stop_token_ids)
        scores = scorer(score_prompts, responses).to(query_ids.device).float()  # (B,)
    stops = torch.tensor(list(stop_token_ids), device=response_ids.device)
    ended = (torch.isin(response_ids, stops) & response_mask).any(dim=1)  # (B,) stopped itself
    rollout = Rollout(query_ids=query_ids, query_mask=query_mask, response_ids=response_ids,
                      response_mask=response_mask, logprobs=logprobs, ref_logprobs=ref_logprobs,
                      values=values, scores=scores, ended_with_eos=ended)
    return rollout, Texts(prompts=score_prompts, responses=responses)


def _policy_and_values(policy, value_model, args: tuple, temperature: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, R) log-probs and values: one trunk pass when the value head sits on the policy's
    backbone (`value_model is policy`), else a pass of each; zero values without a value model
    (a run that only evaluates, or a critic-free method)."""
    if value_model is not None and value_model is policy:
        logprobs, _, values = response_logprobs_and_values(policy, *args, temperature)
        return logprobs, values
    logprobs = response_logprobs(policy, *args, temperature)
    values = response_values(value_model, *args) if value_model is not None \
        else torch.zeros_like(logprobs)
    return logprobs, values


class _Clock:
    """Adds the wall time of a `with` block to a dict entry."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    @contextmanager
    def __call__(self, key: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start


def _right_pad(tensor: torch.Tensor, width: int, value) -> torch.Tensor:
    """(B, width) `tensor` (B, w <= width) with `value` appended to each row."""
    return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """Join rollouts of the same query width whose responses differ in length."""
    if len(parts) == 1:
        return parts[0]
    width = max(p.response_ids.shape[1] for p in parts)

    def right_pad(tensor: torch.Tensor, value) -> torch.Tensor:
        return _right_pad(tensor, width, value)

    return Rollout(
        query_ids=torch.cat([p.query_ids for p in parts]),
        query_mask=torch.cat([p.query_mask for p in parts]),
        response_ids=torch.cat([right_pad(p.response_ids, pad_id) for p in parts]),
        response_mask=torch.cat([right_pad(p.response_mask, False) for p in parts]),
        logprobs=torch.cat([right_pad(p.logprobs, 0.0) for p in parts]),
        ref_logprobs=None if parts[0].ref_logprobs is None else
        torch.cat([right_pad(p.ref_logprobs, 0.0) for p in parts]),
        values=torch.cat([right_pad(p.values, 0.0) for p in parts]),
        scores=torch.cat([p.scores for p in parts]),
        ended_with_eos=torch.cat([p.ended_with_eos for p in parts]),
    )


def gather_rows(accelerator, rollout: Rollout, *per_token: torch.Tensor,
                pad_id: int) -> tuple[Rollout, ...]:
    """Every process's rows on every process, in process order: the global batch, as one
    process holding all of it would have it (queries left-padded and responses right-padded
    to the widest process's width). `per_token` (B, R) tensors (advantages, returns) come
    along. With one process, the inputs themselves.

    The PPO update cuts each epoch's global batch into global minibatches and gives each
    process an equal share of every minibatch, so several processes take exactly the steps
    one process would (the rows are small: ids, masks and a few floats per token).
    """
    if accelerator.num_processes == 1:
        return (rollout, *per_token)
    widths = torch.tensor([rollout.query_ids.shape[1], rollout.response_ids.shape[1]],
                          device=rollout.query_ids.device)
    query_width, response_width = accelerator.reduce(widths, reduction="max").tolist()

    def left(tensor: torch.Tensor, value) -> torch.Tensor:
        pad = query_width - tensor.shape[1]
        return accelerator.gather(torch.nn.functional.pad(tensor, (pad, 0), value=value))

    def right(tensor: torch.Tensor, value) -> torch.Tensor:
        return accelerator.gather(_right_pad(tensor, response_width, value))

    def flags(tensor: torch.Tensor, pad) -> torch.Tensor:  # gloo cannot gather bool tensors
        return pad(tensor.long(), 0).bool()

    gathered = Rollout(
        query_ids=left(rollout.query_ids, pad_id),
        query_mask=flags(rollout.query_mask, left),
        response_ids=right(rollout.response_ids, pad_id),
        response_mask=flags(rollout.response_mask, right),
        logprobs=right(rollout.logprobs, 0.0),
        ref_logprobs=None if rollout.ref_logprobs is None else right(rollout.ref_logprobs, 0.0),
        values=right(rollout.values, 0.0), scores=accelerator.gather(rollout.scores),
        ended_with_eos=accelerator.gather(rollout.ended_with_eos.long()).bool())
    return (gathered, *(right(tensor, 0.0) for tensor in per_token))


def collect_in_chunks(run, models, policy, value_model, prompt_ids: list[list[int]],
                      score_prompts: list[str], lengths: list[int], row_seeds: list[int], *,
                      chunk: int, temperature: float,
                      timings: dict[str, float]) -> tuple[Rollout, Texts]:
    """`collect_rollout` for one row per entry of `prompt_ids`, `chunk` rows at a time (all at
    once when 0), under the trained models' autocast, so value and score heads run at the
    update's precision. `models` (`rl.setup.PolicyModels`) gives the reference, the scorer,
    the tokenizer and the stop tokens."""
    query_ids, query_mask = left_pad(prompt_ids, models.tokenizer.pad_token_id)
    query_ids, query_mask = query_ids.to(run.device), query_mask.to(run.device)
    chunk = chunk or len(query_ids)
    parts, texts = [], Texts(prompts=[], responses=[])
    for start in range(0, len(query_ids), chunk):
        rows = slice(start, start + chunk)
        with run.accelerator.autocast(), run.trained_models_whole():
            rollout, part_texts = collect_rollout(
                policy, models.reference, value_model, models.scorer, query_ids=query_ids[rows],
                query_mask=query_mask[rows], score_prompts=score_prompts[rows],
                tokenizer=models.tokenizer, max_new_tokens=lengths[rows],
                temperature=temperature, stop_token_ids=models.stop_ids,
                row_seeds=row_seeds[rows], timings=timings)
        parts.append(rollout)
        texts.prompts += part_texts.prompts
        texts.responses += part_texts.responses
    return concat_rollouts(parts, models.tokenizer.pad_token_id), texts
