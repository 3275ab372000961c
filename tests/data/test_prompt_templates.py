"""Prompt templates: the dolly layout."""

from rlhf.data.prompt_templates import render_dolly


def test_render_dolly_with_and_without_context() -> None:
    assert render_dolly("Name a fish.", "Tope and rope.", context_chars=500) == (
        "### Instruction:\nName a fish.\n\n### Context:\nTope and rope.\n\n### Response:\n")
    expected = "### Instruction:\nName a fish.\n\n### Response:\n"
    assert render_dolly("Name a fish.", "", context_chars=500) == expected
    assert render_dolly("Name a fish.", " \n ", context_chars=500) == expected
    assert render_dolly("Name a fish.", "Tope and rope.", context_chars=0) == expected


def test_render_dolly_cuts_context_to_context_chars() -> None:
    text = render_dolly("Q?", "abcdefghij", context_chars=4)
    assert text == "### Instruction:\nQ?\n\n### Context:\nabcd\n\n### Response:\n"
