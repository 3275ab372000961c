"""Preference pairs as a causal LM reads them, for DPO and its variants: each pair's chosen and
rejected response after the same prompt tokens, with the loss on response tokens only.

The input is `PreferenceData` from `rlhf.data.preferences` (every layout `train-reward` reads:
explicit prompts, HH-style shared dialogues, conversations rendered with the tokenizer's chat
template, best-of-N lists). Each response is encoded as SFT encodes it (`rlhf.data.sft`):
prompt ids, then response ids ending in EOS, the response tokenised on its own without special
tokens, so the policy is trained on exactly what it produces when it continues the prompt.

- Best-of-N examples (lm-human-preferences: N samples and the index of the best) become N - 1
  pairs (best, other), one per other sample in sample order. The label says only which sample
  is best, so these are all the pairwise preferences it implies; the others are not ranked
  among themselves. `TokenizedPairs.examples` maps each pair back to its example.
- Both sequences of a pair share one prompt: an over-long pair loses the start of the prompt
  (as much as the longer response needs; the prompt's end, which the responses follow, stays),
  and only a response that alone is too long loses its end, EOS included (a cut response must
  not teach stopping), after one prompt token, as SFT's `fit_example` does.
- No pair is dropped silently: cuts are counted (`truncated`, and by part), and a pair whose
  two sequences are the same token ids (a best-of-N sample equal to the best, or two responses
  that differ only after the cut) is dropped and counted by reason in `dropped`: it holds no
  preference, and its DPO gradient is zero.
- Masks come from lengths, never from `ids == pad_id`: with pad == EOS (GPT-2) the EOS that
  ends a response is a real, trained token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlhf.data.preferences import PreferenceData
from rlhf.data.sft import TokenizedSFT, collate_sft, encode_prompts, fit_example, with_eos
from rlhf.errors import UserError

IDENTICAL = "identical_responses"
IDENTICAL_AFTER_CUT = "identical_after_truncation"


@dataclass
class TokenizedPairs:
    """Preference pairs as token ids: pair p is prompt_ids[p] + chosen_ids[p] against
    prompt_ids[p] + rejected_ids[p]."""

    prompt_ids: list[list[int]]
    """Per pair: the prompt's ids, shared by both sequences (cut at its start to fit)."""
    chosen_ids: list[list[int]]
    """Per pair: the chosen response's ids, ending in EOS unless the response was cut."""
    rejected_ids: list[list[int]]
    """Per pair: the rejected response's ids, likewise."""
    examples: list[int]
    """Per pair: the index of its example in the `PreferenceData` (best-of-N gives N - 1)."""
    prompt_truncated: int = 0
    """Pairs whose prompt lost its start to fit max_length."""
    response_truncated: int = 0
    """Pairs with a response that alone was too long and lost its end (and its EOS)."""
    truncated: int = 0
    """Pairs with anything cut (prompt or response)."""
    dropped: dict[str, int] = field(default_factory=lambda: {IDENTICAL: 0,
                                                             IDENTICAL_AFTER_CUT: 0})
    """Pairs left out, by reason: identical_responses (the same ids before any cut),
    identical_after_truncation (they differed only in what max_length cut off)."""

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def lengths(self) -> list[int]:
        """Per pair: the longer of its two sequences, for length-grouped batches."""
        return [len(p) + max(len(c), len(r)) for p, c, r in
                zip(self.prompt_ids, self.chosen_ids, self.rejected_ids, strict=True)]


def expand_pairs(prefs: PreferenceData) -> list[tuple[int, int, int]]:
    """(example, chosen index, rejected index) of every pair: (best, other) for each other
    response of each example, in response order; one pair per example for pair data."""
    return [(example, best, other)
            for example, (responses, best) in enumerate(zip(prefs.responses, prefs.best,
                                                            strict=True))
            for other in range(len(responses)) if other != best]


def tokenize_preference_pairs(prefs: PreferenceData, tokenizer, *,
                              max_length: int) -> TokenizedPairs:
    """Encode every pair (best-of-N expanded) as prompt ids + response ids + EOS, cut to
    `max_length` with one prompt for both responses (see the module docstring).

    The prompt gets the tokenizer's special tokens (a BOS) unless its text already starts with
    the BOS token, i.e. a chat template wrote it (`PreferenceData` does not record which rows
    a template rendered; SFT's `chat` flag does); an empty prompt becomes the BOS token when
    there is one, so the first response token has a position to be predicted from. A response
    that already contains EOS (a chat template's end of turn) ends at its last EOS; otherwise
    EOS is appended, so the policy is trained to stop.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(f"tokenizer '{getattr(tokenizer, 'name_or_path', '?')}' has no EOS "
                        "token; DPO appends EOS to every response so the policy learns to stop")
    if max_length < 2:
        raise UserError(f"data.max_length is {max_length}; a pair needs at least 2 tokens (one "
                        "prompt token and one response token)")
    bos, bos_text = tokenizer.bos_token_id, tokenizer.bos_token
    prompts = encode_prompts(tokenizer, list(prefs.prompts),
                             [bool(bos_text) and p.startswith(bos_text) for p in prefs.prompts])
    responses = _encode_responses(tokenizer, prefs.responses, eos)
    out = TokenizedPairs(prompt_ids=[], chosen_ids=[], rejected_ids=[], examples=[])
    for example, best, other in expand_pairs(prefs):
        prompt = prompts[example] or ([bos] if bos is not None else [])
        chosen, rejected = responses[example][best], responses[example][other]
        fitted = fit_pair(prompt, chosen, rejected, max_length)
        if fitted[1] == fitted[2]:
            out.dropped[IDENTICAL if chosen == rejected else IDENTICAL_AFTER_CUT] += 1
            continue
        _add_pair(out, example, *fitted)
    return out


def _encode_responses(tokenizer, responses: list[list[str]], eos: int) -> list[list[list[int]]]:
    """Per example, per response: ids without special tokens, ending at EOS (one batched call)."""
    flat = [text for texts in responses for text in texts]
    ids = tokenizer(flat, add_special_tokens=False, verbose=False)["input_ids"] if flat else []
    out, start = [], 0
    for texts in responses:
        out.append([with_eos(list(row), eos) for row in ids[start:start + len(texts)]])
        start += len(texts)
    return out


def fit_pair(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int
             ) -> tuple[list[int], list[int], list[int], bool, bool]:
    """(prompt, chosen, rejected, prompt cut, response cut): one prompt that fits both.

    The prompt is cut for the longer response (SFT's `fit_example`), then each response is
    fitted after that prompt: the shorter one then fits whole, the longer one loses its end
    only if it alone exceeds max_length - 1.
    """
    longer = chosen if len(chosen) >= len(rejected) else rejected
    _, keep, prompt_cut, _ = fit_example(prompt, longer, max_length)
    prompt = prompt[len(prompt) - keep:]
    fitted, response_cut = [], False
    for response in (chosen, rejected):
        # the prompt already fits the longer response, so fit_example cuts no more of it
        ids, n_prompt, _, cut = fit_example(prompt, response, max_length)
        fitted.append(ids[n_prompt:])
        response_cut |= cut
    return prompt, fitted[0], fitted[1], prompt_cut, response_cut


def _add_pair(out: TokenizedPairs, example: int, prompt: list[int], chosen: list[int],
              rejected: list[int], prompt_cut: bool, response_cut: bool) -> None:
    out.prompt_ids.append(prompt)
    out.chosen_ids.append(chosen)
    out.rejected_ids.append(rejected)
    out.examples.append(example)
    out.prompt_truncated += prompt_cut
    out.response_truncated += response_cut
    out.truncated += prompt_cut or response_cut


def collate_pairs(pairs: TokenizedPairs, indices: list[int],
                  pad_id: int) -> dict[str, torch.Tensor]:
    """One right-padded batch of 2B rows for the B pairs at `indices`: the chosen sequences,
    then the rejected ones in the same order, so one forward pass scores both and
    `sums[:B]` / `sums[B:]` are chosen / rejected.

    input_ids (2B, T) long; attention_mask (2B, T) bool from the lengths; response_mask
    (2B, T) bool, True on response tokens and their EOS (SFT's `collate_sft`: from the prompt
    lengths, never from `input_ids == pad_id`); pair_index (B,) long, `indices` as a tensor
    (to look up precomputed reference log-probs).
    """
    if not indices:
        raise ValueError("collate_pairs needs at least one pair index")
    rows = ([pairs.prompt_ids[i] + pairs.chosen_ids[i] for i in indices]
            + [pairs.prompt_ids[i] + pairs.rejected_ids[i] for i in indices])
    prompt_lengths = [len(pairs.prompt_ids[i]) for i in indices] * 2
    sequences = TokenizedSFT(input_ids=rows, prompt_lengths=prompt_lengths,
                             prompt_truncated=0, response_truncated=0)
    batch = collate_sft(sequences, list(range(len(rows))), pad_id)  # each (2B, T)
    batch["pair_index"] = torch.tensor(indices, dtype=torch.long)  # (B,)
    return batch
