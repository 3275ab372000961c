"""Sentence-pair reward models trained with segment ids (BERT, ALBERT, ELECTRA) read
`token_type_ids` in training, evaluation and scoring exactly as their tokenizer writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from tokenizers import BertWordPieceTokenizer
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
)

from rlhf.commands import evaluate_reward_model
from rlhf.data.batching import collate_preferences
from rlhf.data.preferences import normalize_rows
from rlhf.data.reward_text import encode_model_inputs, tokenize_preferences
from rlhf.reward.scorers import RewardModelScorer
from rlhf.stages.reward import evaluate_reward, reward_update

CORPUS = ["The harbour was quiet at dawn.", "Gulls wheeled over the silver water.",
          "There were some birds.", "Describe the sea in one line.",
          "The sea is grey, vast and cold.", "A boat rocked against the old stone pier."]
PROMPTS = ["Describe the harbour at dawn in one line.", "The sea?"]
RESPONSES = ["Gulls wheeled over the silver water.", "Grey and cold."]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """A tiny BERT reward model whose token-type embeddings matter, with a WordPiece tokenizer
    trained on a few sentences, saved as a hub model would be."""
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(CORPUS * 4, vocab_size=300, min_frequency=1,
                                  show_progress=False)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        type_vocab_size=2, num_labels=1, pad_token_id=tokenizer.pad_token_id,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        initializer_range=0.5)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # far from zero, so reading the pair without its type ids shows
        model.bert.embeddings.token_type_embeddings.weight.normal_(0.0, 1.0)
        model.classifier.weight.normal_(0.0, 1.0)
    folder = tmp_path_factory.mktemp("bert-rm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert(bert_dir: Path):
    model = AutoModelForSequenceClassification.from_pretrained(bert_dir).eval()
    return model, AutoTokenizer.from_pretrained(bert_dir)


def model_score(model, tokenizer, prompt: str, response: str, **truncation) -> float:
    """The model's own reading of the pair: every tensor its tokenizer returns."""
    with torch.no_grad():
        return float(model(**tokenizer(prompt, response, return_tensors="pt",
                                       **truncation)).logits[0, 0])


def left_cut(tokenizer, max_length: int) -> dict:
    """The tokenizer's own cut of only the prompt, from its start (what `_fit` reproduces)."""
    tokenizer.truncation_side = "left"
    return {"truncation": "only_first", "max_length": max_length}


def test_type_ids_matter_for_this_model(bert) -> None:
    model, tokenizer = bert
    encoded = tokenizer(PROMPTS[0], RESPONSES[0], return_tensors="pt")
    assert set(encoded["token_type_ids"][0].tolist()) == {0, 1}
    with torch.no_grad():
        without = model(input_ids=encoded["input_ids"],
                        attention_mask=encoded["attention_mask"]).logits[0, 0]
    assert abs(float(without) - model_score(model, tokenizer, PROMPTS[0], RESPONSES[0])) > 0.05


def test_pair_encoding_keeps_type_ids_cut_like_the_ids(bert) -> None:
    _, tokenizer = bert
    encoded = encode_model_inputs(tokenizer, PROMPTS, RESPONSES, template="pair", max_length=64)
    assert encoded.truncated == [False, False] and set(encoded.extra) == {"token_type_ids"}
    assert encoded.pad_values == {"token_type_ids": tokenizer.pad_token_type_id}
    for row, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
        expected = tokenizer(prompt, response)
        assert encoded.input_ids[row] == expected["input_ids"]
        assert encoded.extra["token_type_ids"][row] == expected["token_type_ids"]
    cut = encode_model_inputs(tokenizer, PROMPTS, RESPONSES, template="pair", max_length=12)
    assert cut.truncated == [True, False]
    expected = tokenizer(PROMPTS[0], RESPONSES[0], **left_cut(tokenizer, 12))
    assert cut.input_ids[0] == expected["input_ids"]
    assert cut.extra["token_type_ids"][0] == expected["token_type_ids"]


def test_tokenizers_without_segment_ids_give_none(roberta_tokenizer, gpt2_tokenizer) -> None:
    for tokenizer in (roberta_tokenizer, gpt2_tokenizer):
        for template in ("pair", "concat"):
            encoded = encode_model_inputs(tokenizer, PROMPTS, RESPONSES, template=template,
                                          max_length=8)
            assert encoded.extra == {} and encoded.pad_values == {}


def test_scorer_reads_the_pair_as_the_model_does(bert_dir: Path, bert) -> None:
    model, tokenizer = bert
    scorer = RewardModelScorer.from_pretrained(str(bert_dir))
    expected = [model_score(model, tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES,
                                                                    strict=True)]
    # Two rows of different lengths: the short one is padded (type ids with pad_token_type_id).
    torch.testing.assert_close(scorer(PROMPTS, RESPONSES), torch.tensor(expected),
                               atol=1e-5, rtol=1e-5)
    scorer.max_length = 12  # the first pair is cut: it loses the start of its prompt
    expected[0] = model_score(model, tokenizer, PROMPTS[0], RESPONSES[0],
                              **left_cut(tokenizer, 12))
    torch.testing.assert_close(scorer(PROMPTS, RESPONSES), torch.tensor(expected),
                               atol=1e-5, rtol=1e-5)


def preference_rows() -> list[dict]:
    return [{"prompt": PROMPTS[0], "chosen": RESPONSES[0], "rejected": "There were birds."},
            {"prompt": PROMPTS[1], "chosen": RESPONSES[1], "rejected": "The boat rocked."}]


def test_reward_training_and_evaluation_read_type_ids(bert) -> None:
    model, tokenizer = bert
    data = normalize_rows(preference_rows(), source="mem")
    tokenized = tokenize_preferences(data, tokenizer, template="pair", max_length=64)
    batch = collate_preferences(tokenized, [0, 1], tokenizer.pad_token_id)
    assert batch["extra_inputs"]["token_type_ids"].shape == batch["input_ids"].shape
    expected = torch.tensor([[model_score(model, tokenizer, p, r) for r in responses]
                             for p, responses in zip(data.prompts, data.responses, strict=True)])
    accelerator = Accelerator(cpu=True)
    result = evaluate_reward(model, tokenized, batch_size=4, pad_id=tokenizer.pad_token_id,
                             accelerator=accelerator)
    torch.testing.assert_close(result.rewards, expected, atol=1e-5, rtol=1e-5)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    stats = reward_update(model, optimizer, scheduler, accelerator, tokenized, [0, 1],
                          micro_batch_size=1, pad_id=tokenizer.pad_token_id, center_coef=0.0,
                          max_grad_norm=1.0, is_finite=lambda _: True)
    stats = stats[0] if isinstance(stats, tuple) else stats  # (metrics, outcome)
    model.eval()
    assert stats["train/chosen_mean"] == pytest.approx(float(expected[:, 0].mean()), abs=1e-5)
    assert stats["train/rejected_mean"] == pytest.approx(float(expected[:, 1].mean()), abs=1e-5)


def test_eval_reward_reads_type_ids(bert_dir: Path, bert, tmp_path: Path) -> None:
    model, tokenizer = bert
    path = tmp_path / "pairs.jsonl"
    rows = preference_rows()
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    metrics = evaluate_reward_model(str(bert_dir), str(path), batch_size=4, max_length=64)
    chosen = [model_score(model, tokenizer, row["prompt"], row["chosen"]) for row in rows]
    assert metrics["chosen_mean"] == pytest.approx(sum(chosen) / len(chosen), abs=1e-5)
