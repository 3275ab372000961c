"""How a PPO prompt row becomes the text the policy continues, one template each:

- `dolly`: instruction plus optional context, in the classic dolly/alpaca layout (`render_dolly`);
- `prompt`: a plain `prompt` column used verbatim;
- `chat`: a `messages` list of {role, content} rendered with the policy tokenizer's chat
  template and a generation prompt (`render_chat`).
"""

from __future__ import annotations

from rlhf.errors import UserError

TEMPLATES = ("dolly", "prompt", "chat")

_INSTRUCTION, _CONTEXT, _RESPONSE = "### Instruction:\n", "### Context:\n", "### Response:\n"


def check_template(template: str) -> None:
    """A UserError for a template name that is not one of `TEMPLATES`."""
    if template not in TEMPLATES:
        raise UserError(f"data.template='{template}' is not one of {', '.join(TEMPLATES)}")


def render_dolly(instruction: str, context: str, *, context_chars: int) -> str:
    """The dolly prompt of the reference dolly/GPT-2 workload. With a context:

        "### Instruction:\\n{instruction}\\n\\n### Context:\\n{context}\\n\\n### Response:\\n"

    and without one (empty or whitespace-only after the cut) the Context block is left out:

        "### Instruction:\\n{instruction}\\n\\n### Response:\\n"

    The context is cut to its first `context_chars` characters first, as that workload did. Field
    text is used verbatim (no stripping), so the prompt ends with exactly one newline after the
    marker and the policy starts its answer on a fresh line.
    """
    context = context[:context_chars]
    text = f"{_INSTRUCTION}{instruction}\n\n"
    if context.strip():
        text += f"{_CONTEXT}{context}\n\n"
    return text + _RESPONSE


def dolly_context_start(instruction: str) -> int:
    """Where the context starts in `render_dolly`'s text (when it has a context)."""
    return len(_INSTRUCTION) + len(instruction) + len("\n\n") + len(_CONTEXT)


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The tokenizer's chat template over `messages`, ending with the assistant's cue."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", None) or "the policy tokenizer"
        raise UserError(f"data.template=chat needs a tokenizer with a chat template, and {name} "
                        "has none; use data.template=dolly or prompt, or a policy whose "
                        "tokenizer_config.json sets chat_template")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_prompt(template: str, fields: dict, *, tokenizer, context_chars: int) -> str:
    """The text of one prompt's normalised fields (a `PromptSet.raw` row) in `template`."""
    if template == "dolly":
        return render_dolly(fields["instruction"], fields.get("context") or "",
                            context_chars=context_chars)
    if template == "prompt":
        return fields["prompt"]
    return render_chat(tokenizer, fields["messages"])
