"""Supervised fine-tuning data: (prompt, response) text from any source, tokenised with a mask
that puts the loss on the response only.

Rows in any of these layouts become one `SFTData` (the first row decides the layout; `columns`
maps the canonical names `prompt`, `response` and `messages` to the file's own):

- prompt + response: string columns `prompt` and `response`, or `completion` (TRL's
  prompt-completion layout), or `chosen` (preference data: SFT on the preferred response).
  `columns={"response": "rejected"}` makes any column the response.
- implicit pairs (Anthropic HH): whole dialogues in `chosen` and `rejected` and no prompt
  column: the prompt is their shared start (`split_shared_prompt`), the response the rest of
  the chosen dialogue.
- conversations: `messages`, a list of {"role", "content"}: the prompt is every message before
  the last assistant message and the response is that message (messages after it are not
  trained on). A response column holding a message list is read the same way; when nothing
  precedes its last assistant message, the prompt column supplies the prompt (a string is one
  user message). With a chat template the text is the template's rendering
  (`render_conversation`), otherwise "role: content" lines.

An empty response never stops a run: there is nothing to imitate in it, so the example is
dropped and counted (`dropped_empty`), whether the cell is empty or blank, the response is
empty once an implicit pair's shared start is removed, or the last assistant message's content
is blank. A missing (null) or non-string value, or an empty list of messages, is an error
naming the row; so is a split left with no examples at all.

The built-in source `builtin:descriptiveness-sft` is `builtin:descriptiveness` (the synthetic
scene openings of `rlhf.data.synthetic`) with `response` = the PLAIN continuation (`rejected`).
SFT then teaches fluent, plain scene writing, and the later stages have something to do: the
reward model prefers the vivid continuation and PPO has room to make the policy more vivid,
as in the InstructGPT pipeline (SFT, then RM, then PPO). `data.columns.response=chosen` trains
on the vivid continuations instead.

Prompt and response are tokenised separately and joined as ids, because that is how PPO
continues a prompt; no separator is added (the texts are used verbatim). The tokenizer's EOS is
appended so the policy learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlhf.data.batching import pad_sequences
from rlhf.data.fields import (
    missing_columns_error,
    require_messages,
    require_string,
    require_value,
)
from rlhf.data.preferences import render_conversation, split_shared_prompt
from rlhf.data.sources import Rows, load_rows, row_location
from rlhf.data.splits import train_and_test
from rlhf.errors import UserError

CANONICAL_COLUMNS = ("prompt", "response", "messages")
RESPONSE_COLUMNS = ("response", "completion", "chosen")  # looked for in this order
IMPLICIT_PARTNER = {"chosen": "rejected", "rejected": "chosen"}
BUILTIN_SFT = "builtin:descriptiveness-sft"


@dataclass
class SFTData:
    """Examples of one split, as text."""

    prompts: list[str]
    responses: list[str]
    chat: list[bool]
    """True where the text was rendered by a chat template, which writes its own special
    tokens (so the prompt is encoded without adding BOS again)."""
    counts: dict[str, int] = field(default_factory=dict)
    """How the examples were made: rows read, dropped_empty, held_out, dropped_max_samples."""

    def __len__(self) -> int:
        return len(self.prompts)


def subset(data: SFTData, indices) -> SFTData:
    """The examples at `indices`, in that order (counts are copied, not recomputed)."""
    indices = list(indices)
    return SFTData(prompts=[data.prompts[i] for i in indices],
                   responses=[data.responses[i] for i in indices],
                   chat=[data.chat[i] for i in indices], counts=dict(data.counts))


# -- normalising rows ------------------------------------------------------------------------


def normalize_sft_rows(rows: list[dict], *, source: str, columns: dict[str, str] | None = None,
                       tokenizer=None) -> SFTData:
    """Turn rows of any supported layout into `SFTData`, validating every row.

    `source` names the data in error messages; `tokenizer` renders conversations with its
    chat template when it has one.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(CANONICAL_COLUMNS))
    if unknown:
        raise UserError(f"data.columns: unknown name(s) {', '.join(unknown)}; the names that "
                        f"can be mapped for SFT are {', '.join(CANONICAL_COLUMNS)}")
    data = SFTData(prompts=[], responses=[], chat=[], counts={"rows": len(rows)})
    if not rows:
        return data
    names = _sft_columns(rows[0], source, columns)
    dropped = 0
    for index, row in enumerate(rows):
        example = _example(row, names, rows, index, source, tokenizer)
        if example is None:
            dropped += 1
            continue
        prompt, response, chat = example
        data.prompts.append(prompt)
        data.responses.append(response)
        data.chat.append(chat)
    data.counts["dropped_empty"] = dropped
    return data


def _sft_columns(first: dict, source: str, columns: dict[str, str]) -> dict[str, str | None]:
    """The layout's columns: {"messages"} or {"prompt", "response", "partner"} (None: absent)."""
    found_response = [c for c in RESPONSE_COLUMNS if c in first]
    if "messages" in columns or ("response" not in columns and not found_response
                                 and "messages" in first):
        column = columns.get("messages", "messages")
        if column not in first:
            raise missing_columns_error(source, first, ["messages"], columns)
        return {"messages": column}
    response = columns.get("response") or (found_response[0] if found_response else None)
    if response is None or response not in first:
        found = ", ".join(f"'{name}'" for name in first) or "none"
        raise UserError(f"{source}: no response column (columns found: {found}); SFT data "
                        "needs 'prompt' with 'response', 'completion' or 'chosen', or a "
                        "'messages' conversation; map other names with data.columns.response="
                        "<name> (and data.columns.prompt=<name>)")
    prompt = columns.get("prompt", "prompt")
    if prompt not in first:
        if "prompt" in columns:
            raise missing_columns_error(source, first, ["prompt"], columns)
        prompt = None
    partner = IMPLICIT_PARTNER.get(response)
    partner = partner if prompt is None and partner in first else None
    if prompt is None and partner is None and not isinstance(first[response], list):
        raise missing_columns_error(source, first, ["prompt"])
    return {"prompt": prompt, "response": response, "partner": partner}


def _example(row: dict, names: dict, rows: list[dict], index: int, source: str,
             tokenizer) -> tuple[str, str, bool] | None:
    """(prompt text, response text, rendered by a chat template) of one row; None when its
    response is empty (the row is valid, but there is nothing to train on)."""
    where = f"{source}: {row_location(rows, index)}"
    if "messages" in names:
        messages = require_messages(require_value(row, names["messages"], rows, index, source),
                                    names["messages"], where)
        return _conversation(messages, None, names["messages"], where, tokenizer)
    response = require_value(row, names["response"], rows, index, source)
    prompt = None if names["prompt"] is None else require_value(row, names["prompt"], rows,
                                                                index, source)
    if isinstance(response, list):
        messages = require_messages(response, names["response"], where)
        return _conversation(messages, prompt, names["prompt"], where, tokenizer)
    require_string(response, names["response"], where)
    if names["partner"] is not None:  # implicit pair: the prompt is the shared start
        partner = require_value(row, names["partner"], rows, index, source)
        require_string(partner, names["partner"], where)
        prompt, response, _ = split_shared_prompt(response, partner)
    else:
        require_string(prompt, names["prompt"], where)
    return (prompt, response, False) if response.strip() else None


def _conversation(messages: list[dict], prompt, prompt_column: str | None, where: str,
                  tokenizer) -> tuple[str, str, bool] | None:
    """Split at the last assistant message: (prompt text, its text, chat-template rendered);
    None when that message is blank (its rendering is not empty: it holds role markers)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        roles = ", ".join(sorted({m["role"] for m in messages}))
        raise UserError(f"{where}: the conversation has no message with role 'assistant' "
                        f"(roles found: {roles}); SFT trains on the last assistant message")
    before = messages[:last]
    if not before and prompt is not None:  # e.g. TRL's conversational prompt-completion rows
        if isinstance(prompt, str):
            before = [{"role": "user", "content": prompt}]
        else:
            before = require_messages(prompt, prompt_column, where)
    if not messages[last]["content"].strip():
        return None
    prompt_text, response_text = render_conversation(before, [messages[last]], tokenizer, where)
    return prompt_text, response_text, bool(getattr(tokenizer, "chat_template", None))


# -- loading ---------------------------------------------------------------------------------


def load_sft_rows(path: str, *, name: str | None = None, split: str = "train",
                  test_split: str | None = "test") -> tuple[list[dict], list[dict] | None, str]:
    """`load_rows`, plus the built-in `builtin:descriptiveness-sft` (see the module docstring)."""
    if path != BUILTIN_SFT:
        return load_rows(path, name=name, split=split, test_split=test_split)
    train, test, _ = load_rows("builtin:descriptiveness", split=split, test_split=test_split)
    return _plain_response(train), None if test is None else _plain_response(test), path


def _plain_response(rows: list[dict]) -> Rows:
    """Preference rows with `response` = the plain continuation (`rejected`)."""
    return Rows([{**row, "response": row["rejected"]} for row in rows],
                split=getattr(rows, "split", None))


def load_sft(path: str, *, name: str | None = None, split: str = "train",
             test_split: str | None = "test", test_fraction: float = 0.1, seed: int = 0,
             columns: dict[str, str] | None = None, max_samples: int | None = None,
             tokenizer=None) -> tuple[SFTData, SFTData]:
    """(train, test) SFT examples from any source `load_rows` reads, or the built-in one.

    The test part is the source's own `test_split` when it has one, else a seeded
    `test_fraction` of the training rows. `max_samples` keeps the first examples of each part.
    """
    train_rows, test_rows, description = load_sft_rows(path, name=name, split=split,
                                                       test_split=test_split)
    train = normalize_sft_rows(train_rows, source=description, columns=columns,
                               tokenizer=tokenizer)
    if not train:
        raise UserError(f"{description}: no usable SFT examples in split '{split}' "
                        f"({train.counts['rows']} rows, "
                        f"{train.counts.get('dropped_empty', 0)} with an empty response)")
    test = None
    if test_rows is not None:
        test = normalize_sft_rows(test_rows, source=description, columns=columns,
                                  tokenizer=tokenizer)
        if not test:
            raise UserError(f"{description}: no usable SFT examples in split '{test_split}'; "
                            f"fix that split, or set data.test_split={split} to hold out "
                            "data.test_fraction of the training rows instead")
    return train_and_test(train, test, test_fraction=test_fraction, seed=seed,
                          max_samples=max_samples, subset=subset, dropped="dropped_empty")


# -- tokenising ------------------------------------------------------------------------------


@dataclass
class TokenizedSFT:
    """Examples as the policy reads them: prompt ids, then response ids ending in EOS."""

    input_ids: list[list[int]]
    """Per example: prompt ids + response ids (+ EOS unless the response was cut)."""
    prompt_lengths: list[int]
    """Per example: how many leading ids are prompt; the rest is response (loss on it)."""
    prompt_truncated: int
    """Examples whose prompt lost its start to fit max_length."""
    response_truncated: int
    """Examples whose response alone was too long and lost its end (and its EOS)."""

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_sft(data: SFTData, tokenizer, *, max_length: int) -> TokenizedSFT:
    """Encode every example as prompt ids + response ids + EOS, cut to `max_length`.

    The prompt is encoded as PPO encodes prompts (the tokenizer's own special tokens, e.g. a
    BOS, unless a chat template already wrote them); the response without special tokens. An
    empty prompt becomes the BOS token when there is one, so the first response token has
    something to be predicted from. A response that already contains EOS (a chat template's
    end of turn) ends at its last EOS; otherwise EOS is appended, so the policy learns to stop.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(f"tokenizer '{getattr(tokenizer, 'name_or_path', '?')}' has no EOS "
                        "token; SFT appends EOS to every response so the policy learns to stop")
    prompt_ids = encode_prompts(tokenizer, data.prompts, data.chat)
    response_ids = (tokenizer(list(data.responses), add_special_tokens=False,
                              verbose=False)["input_ids"] if len(data) else [])
    bos = tokenizer.bos_token_id
    out = TokenizedSFT(input_ids=[], prompt_lengths=[], prompt_truncated=0,
                       response_truncated=0)
    for prompt, response in zip(prompt_ids, response_ids, strict=True):
        prompt = list(prompt) or ([bos] if bos is not None else [])
        ids, n_prompt, prompt_cut, response_cut = fit_example(
            prompt, with_eos(list(response), eos), max_length)
        out.input_ids.append(ids)
        out.prompt_lengths.append(n_prompt)
        out.prompt_truncated += prompt_cut
        out.response_truncated += response_cut
    return out


def encode_prompts(tokenizer, prompts: list[str], chat: list[bool]) -> list[list[int]]:
    """One batched call per kind: plain prompts get the tokenizer's special tokens, chat ones
    do not (their template wrote them)."""
    encoded: list[list[int]] = [[] for _ in prompts]
    for rendered in (False, True):
        indices = [i for i, flag in enumerate(chat) if flag == rendered]
        if not indices:
            continue
        ids = tokenizer([prompts[i] for i in indices], add_special_tokens=not rendered,
                        verbose=False)["input_ids"]
        for index, row in zip(indices, ids, strict=True):
            encoded[index] = list(row)
    return encoded


def with_eos(response_ids: list[int], eos_id: int) -> list[int]:
    """The response up to and including its last EOS, or with EOS appended when it has none."""
    if eos_id in response_ids:
        last = len(response_ids) - 1 - response_ids[::-1].index(eos_id)
        return response_ids[:last + 1]
    return response_ids + [eos_id]


def fit_example(prompt_ids: list[int], response_ids: list[int],
                max_length: int) -> tuple[list[int], int, bool, bool]:
    """(ids, prompt length, prompt cut, response cut) of prompt + response in `max_length`.

    Too long: the prompt loses its start, so the tokens that the loss is on stay whole and the
    prompt's end (what the response follows) stays. If the response alone does not fit, one
    prompt token is kept (the first response token needs a position to be predicted from)
    and the response loses its end, EOS included: a cut response must not teach stopping.
    """
    if len(prompt_ids) + len(response_ids) <= max_length:
        return prompt_ids + response_ids, len(prompt_ids), False, False
    keep = max(max_length - len(response_ids), min(len(prompt_ids), 1))
    prompt = prompt_ids[len(prompt_ids) - keep:]
    response = response_ids[:max_length - keep]
    return (prompt + response, keep, keep < len(prompt_ids),
            len(response) < len(response_ids))


# -- batches ---------------------------------------------------------------------------------


def collate_sft(data: TokenizedSFT, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors for the examples at `indices`.

    input_ids (B, T) long; attention_mask (B, T) bool from the lengths; response_mask (B, T)
    bool, True on response tokens and EOS. Both masks come from lengths and prompt lengths,
    never from `input_ids == pad_id` (pad is EOS on GPT-2, and EOS is trained on).
    """
    if not indices:
        raise ValueError("collate_sft needs at least one example index")
    input_ids, attention_mask = pad_sequences([data.input_ids[i] for i in indices], pad_id,
                                              "right")  # (B, T)
    starts = torch.tensor([data.prompt_lengths[i] for i in indices])  # (B,)
    positions = torch.arange(input_ids.shape[1])  # (T,)
    response_mask = attention_mask & (positions[None, :] >= starts[:, None])  # (B, T)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "response_mask": response_mask}


def loss_tokens(data: TokenizedSFT, indices: list[int]) -> int:
    """Response tokens the loss covers: all but one at position 0 (nothing predicts it)."""
    return sum(len(data.input_ids[i]) - max(data.prompt_lengths[i], 1) for i in indices)
