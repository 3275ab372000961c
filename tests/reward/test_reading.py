"""Reward models trained elsewhere are read the way they were trained: TRL's RewardTrainer
convention (prompt + response + EOS) for models not saved by `rlhf`, the recorded reading for
models saved by `train-reward`, and an explicit option that overrides both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

from rlhf.cli import main
from rlhf.config import PPOConfig, RewardConfig, load_config
from rlhf.reward.reading import APPEND_EOS_KEY, SEPARATOR_KEY, TEMPLATE_KEY, reward_model_reading
from rlhf.reward.scorers import RewardModelScorer
from rlhf.stages.ppo.setup import load_ppo_models
from rlhf.stages.reward import prepare_reward_data

ROOT = Path(__file__).resolve().parents[2]
# Prompt/response boundaries where GPT-2's BPE splits prompt + response exactly as it splits
# them apart (the default "pair" template of a GPT-2 tokenizer is ids(prompt) + ids(response));
# the last response already ends with the EOS text, to which TRL adds nothing.
PROMPTS = ["Question: Describe the harbour at dawn.\nAnswer:", "The sea was", "Q: And then?\nA:"]
RESPONSES = [" Gulls wheeled over the silver water.", " grey.", " Nothing.<|endoftext|>"]


def trl_input_ids(tokenizer, prompt: str, response: str) -> list[int]:
    """The ids TRL's RewardTrainer trains on for a non-conversational (prompt, response) row.

    trl/trainer/reward_trainer.py, `RewardTrainer._prepare_dataset`, unchanged from v0.24.0
    (the RewardTrainer refactor, huggingface/trl#4093) to v1.9: `add_eos` appends
    `processing_class.eos_token` to the response TEXT unless it already ends with it, then
    `tokenize_fn` tokenises `processing_class(text=example["prompt"] + example["chosen"])`.
    (TRL <= 0.23 tokenised `tokenizer(chosen)` with no EOS.)
    """
    if not response.endswith(tokenizer.eos_token):
        response = response + tokenizer.eos_token
    return tokenizer(text=prompt + response)["input_ids"]


@torch.no_grad()
def trl_scores(model, tokenizer, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """What TRL's `compute_loss` scores: `model(**inputs).logits` on DataCollatorForPreference's
    batch (right-padded with the pad id, attention mask of ones on real tokens)."""
    rows = [trl_input_ids(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    width = max(len(row) for row in rows)
    input_ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row))
                              for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return model(input_ids=input_ids, attention_mask=mask).logits[:, 0]


@torch.no_grad()
def score_at_last_token(model, ids: list[int]) -> float:
    """The score head applied at the last token of `ids` (here: the EOS)."""
    hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
    return float(model.score(hidden)[0, -1])


def save_gpt2_reward_model(folder: Path, tokenizer, **rlhf_keys) -> GPT2ForSequenceClassification:
    """A tiny random GPT-2 reward model saved as a TRL-trained hub model would be (the config's
    pad id is the tokenizer's, as RewardTrainer sets it), plus any rlhf keys given."""
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2,
                        n_positions=128, num_labels=1, pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id, initializer_range=0.5,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **rlhf_keys)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def own_pad_tokenizer(gpt2_tokenizer_dir: Path):
    """GPT-2 with a pad token of its own (pad != EOS), as many TRL users set it up."""
    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    return tokenizer


def test_trl_model_with_a_pad_token_reads_prompt_response_eos(own_pad_tokenizer,
                                                              tmp_path: Path) -> None:
    tokenizer = own_pad_tokenizer
    model = save_gpt2_reward_model(tmp_path / "rm", tokenizer)
    scorer = RewardModelScorer.from_pretrained(str(tmp_path / "rm"))
    assert scorer.append_eos
    expected_ids = [trl_input_ids(tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES,
                                                                   strict=True)]
    assert scorer.encode(PROMPTS, RESPONSES) == expected_ids
    assert all(ids[-1] == tokenizer.eos_token_id and ids[-2] != tokenizer.eos_token_id
               for ids in expected_ids)
    scores = scorer(PROMPTS, RESPONSES)
    torch.testing.assert_close(scores, trl_scores(model, tokenizer, PROMPTS, RESPONSES),
                               atol=1e-5, rtol=1e-5)
    at_eos = torch.tensor([score_at_last_token(model, ids) for ids in expected_ids])
    torch.testing.assert_close(scores, at_eos, atol=1e-5, rtol=1e-5)
    # Before this reading, the model was scored without the EOS: another number entirely.
    without = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), append_eos=False)
    assert not torch.allclose(without(PROMPTS, RESPONSES), scores, atol=1e-3)


def test_trl_model_padding_with_eos_is_read_where_trl_read_it(gpt2_tokenizer,
                                                              tmp_path: Path) -> None:
    # With pad == EOS (GPT-2's usual set-up), the model's own pooling in TRL's compute_loss
    # skips the appended EOS as padding: TRL trained the score at the last response token,
    # which a causal model computes identically without the EOS after it.
    tokenizer = gpt2_tokenizer
    model = save_gpt2_reward_model(tmp_path / "rm", tokenizer)
    scorer = RewardModelScorer.from_pretrained(str(tmp_path / "rm"))
    assert not scorer.append_eos
    expected_ids = [trl_input_ids(tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES,
                                                                   strict=True)]
    assert scorer.encode(PROMPTS[:2], RESPONSES[:2]) == [ids[:-1] for ids in expected_ids[:2]]
    torch.testing.assert_close(scorer(PROMPTS[:2], RESPONSES[:2]),
                               trl_scores(model, tokenizer, PROMPTS[:2], RESPONSES[:2]),
                               atol=1e-5, rtol=1e-5)
    # Forced: exactly TRL's ids, read at the EOS, which TRL's model never read.
    forced = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), append_eos=True)
    assert forced.encode(PROMPTS, RESPONSES) == expected_ids
    at_eos = torch.tensor([score_at_last_token(model, ids) for ids in expected_ids])
    torch.testing.assert_close(forced(PROMPTS, RESPONSES), at_eos, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(at_eos[:2], scorer(PROMPTS[:2], RESPONSES[:2]), atol=1e-3)


def test_appended_eos_survives_truncation(own_pad_tokenizer, tmp_path: Path) -> None:
    tokenizer = own_pad_tokenizer
    save_gpt2_reward_model(tmp_path / "rm", tokenizer)
    full = trl_input_ids(tokenizer, PROMPTS[0], RESPONSES[0])
    response_ids = tokenizer(RESPONSES[0])["input_ids"]
    keep = len(response_ids) + 1 + 2  # the response, its EOS and the prompt's last 2 tokens
    assert len(full) > keep
    scorer = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), max_length=keep)
    assert scorer.encode(PROMPTS[:1], RESPONSES[:1]) == [full[-keep:]]  # the prompt's start goes
    concat = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), template="concat",
                                               separator="", max_length=keep)
    assert concat.encode(PROMPTS[:1], RESPONSES[:1]) == [full[-keep:]]
    pair = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), template="pair",
                                             max_length=4)
    # The response alone is too long: its end goes, the EOS stays.
    assert pair.encode(PROMPTS[:1], RESPONSES[:1]) == [response_ids[:3]
                                                       + [tokenizer.eos_token_id]]


def test_concat_without_separator_is_exact_at_any_boundary(own_pad_tokenizer,
                                                           tmp_path: Path) -> None:
    # TRL joins prompt + response as text: where the prompt ends in a space, only
    # template=concat with an empty separator gives its ids ("pair" encodes the parts apart).
    # That is the default reading of a decoder reward model that rlhf did not save.
    tokenizer = own_pad_tokenizer
    save_gpt2_reward_model(tmp_path / "rm", tokenizer)
    prompt, response = "Answer: ", "Grey."
    expected = trl_input_ids(tokenizer, prompt, response)
    default = RewardModelScorer.from_pretrained(str(tmp_path / "rm"))
    assert (default.template, default.separator) == ("concat", "")
    assert default.encode([prompt], [response]) == [expected]
    pair = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), template="pair")
    assert pair.encode([prompt], [response]) != [expected]


def test_rlhf_saved_models_keep_their_recorded_reading(own_pad_tokenizer, gpt2_tokenizer,
                                                       tmp_path: Path) -> None:
    recorded = {TEMPLATE_KEY: "concat", SEPARATOR_KEY: "\n"}
    save_gpt2_reward_model(tmp_path / "no-eos", own_pad_tokenizer,
                           **recorded, **{APPEND_EOS_KEY: False})
    save_gpt2_reward_model(tmp_path / "eos", gpt2_tokenizer, **recorded, **{APPEND_EOS_KEY: True})
    save_gpt2_reward_model(tmp_path / "older", own_pad_tokenizer, **recorded)  # before the key
    text = own_pad_tokenizer("p\nr")["input_ids"]
    eos = own_pad_tokenizer.eos_token_id
    for name, auto, ids in (("no-eos", False, text), ("eos", True, text + [eos]),
                            ("older", False, text)):
        scorer = RewardModelScorer.from_pretrained(str(tmp_path / name))
        assert scorer.append_eos is auto and scorer.encode(["p"], ["r"]) == [ids], name
        for forced in (True, False):  # the explicit option overrides the record both ways
            scorer = RewardModelScorer.from_pretrained(str(tmp_path / name), append_eos=forced)
            assert scorer.encode(["p"], ["r"]) == [text + [eos] * forced], name


def test_reading_of_models_that_record_nothing(roberta_tokenizer) -> None:
    # Encoders whose tokenizer ends the input with EOS (RoBERTa's </s>) get nothing appended
    # whatever the rule says; a tokenizer without EOS (BERT) never gets one.
    class Config:
        pad_token_id = roberta_tokenizer.pad_token_id

    class Model:
        config = Config()

    assert reward_model_reading(Model(), roberta_tokenizer)["append_eos"] is True
    scorer = RewardModelScorer(torch.nn.Linear(1, 1), roberta_tokenizer, template="pair",
                               append_eos=True)
    assert scorer.encode(["p"], ["r"]) == [roberta_tokenizer("p", "r")["input_ids"]]


def test_cli_and_ppo_take_the_explicit_option(own_pad_tokenizer, tmp_path: Path,
                                              capsys) -> None:
    tokenizer = own_pad_tokenizer
    save_gpt2_reward_model(tmp_path / "rm", tokenizer)
    scores = {}
    for choice in ("auto", "yes", "no"):
        assert main(["score", "--reward-model", str(tmp_path / "rm"), "--prompt", PROMPTS[0],
                     "--response", RESPONSES[0], "--append-eos", choice]) == 0
        scores[choice] = float(capsys.readouterr().out)
    expected = {"yes": True, "no": False}
    for choice, append in expected.items():
        scorer = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), append_eos=append)
        assert scores[choice] == pytest.approx(float(scorer(PROMPTS[:1], RESPONSES[:1])[0]),
                                               abs=1e-5)
    assert scores["auto"] == scores["yes"] != scores["no"]

    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": PROMPTS[0], "chosen": RESPONSES[0],
                                "rejected": RESPONSES[1]}) + "\n")
    means = {}
    for choice in ("yes", "no"):
        assert main(["eval-reward", "--reward-model", str(tmp_path / "rm"), "--data",
                     str(data), "--append-eos", choice]) == 0
        means[choice] = json.loads(capsys.readouterr().out)["chosen_mean"]
    assert means["yes"] == pytest.approx(scores["yes"], abs=1e-5)
    assert means["no"] == pytest.approx(scores["no"], abs=1e-5)

    for value, append in (("null", True), ("false", False), ("true", True)):
        cfg = load_config(PPOConfig, ROOT / "configs" / "ppo" / "tiny.yaml",
                          [f"model.reward={tmp_path / 'rm'}",
                           f"model.reward_append_eos={value}"])
        scorer = load_ppo_models(cfg, torch.device("cpu")).scorer  # what PPO reads with
        assert scorer.append_eos is append, value


def test_train_reward_reads_decoder_text_as_trl_does(own_pad_tokenizer, gpt2_tokenizer,
                                                     tmp_path: Path) -> None:
    # train-reward appends EOS by the same rule, so its decoder models read the token that
    # TRL-trained ones read (and that `transformers` pooling reads on prompt + response + EOS).
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": p, "chosen": r, "rejected": " No."} for p, r in zip(PROMPTS[:2],
                                                                           RESPONSES[:2],
                                                                           strict=True)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) * 4)
    cfg = load_config(RewardConfig, ROOT / "configs" / "reward" / "tiny.yaml",
                      [f"data.path={path}", f"run.output_dir={tmp_path / 'run'}"])
    for tokenizer, ends_with_eos in ((own_pad_tokenizer, True), (gpt2_tokenizer, False)):
        data = prepare_reward_data(cfg, tokenizer)
        inputs = [ids for example in data.train.input_ids + data.test.input_ids
                  for ids in example]
        assert len(inputs) == 16
        assert all((ids[-1] == tokenizer.eos_token_id) is ends_with_eos for ids in inputs)
