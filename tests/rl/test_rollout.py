"""Sampling, log-probs, values and cross-tokenizer scoring over left-padded batches."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from rlhf.algo.masking import response_mask_after_stop
from rlhf.data.batching import left_pad
from rlhf.models import frozen_copy, load_policy, load_reward_model
from rlhf.reward.scorers import FunctionScorer, RewardModelScorer
from rlhf.rl.forward import response_logprobs, response_values
from rlhf.rl.generation import sample_responses
from rlhf.rl.rollout import collect_rollout
from rlhf.value_models import value_model_from_policy


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    return model.eval(), tokenizer


def prompts_of(tokenizer) -> list[list[int]]:
    texts = ["The old lighthouse stood", "Rain", "A quiet street at dawn, with shops still shut"]
    return [tokenizer(t)["input_ids"] for t in texts]


def test_batched_log_probs_equal_each_sequence_alone(policy) -> None:
    model, tokenizer = policy
    query_ids, query_mask = left_pad(prompts_of(tokenizer), tokenizer.pad_token_id)
    torch.manual_seed(0)
    responses = sample_responses(model, query_ids, query_mask, max_new_tokens=6, temperature=0.7,
                                 stop_token_ids=[tokenizer.eos_token_id],
                                 pad_id=tokenizer.pad_token_id)
    mask = response_mask_after_stop(responses, [tokenizer.eos_token_id])
    batched = response_logprobs(model, query_ids, query_mask, responses, mask, 0.7)
    for row, prompt in enumerate(prompts_of(tokenizer)):
        alone = response_logprobs(model, torch.tensor([prompt]), torch.ones(1, len(prompt),
                                  dtype=torch.bool), responses[row:row + 1], mask[row:row + 1],
                                  0.7)
        real = mask[row]
        torch.testing.assert_close(batched[row][real], alone[0][real], atol=1e-5, rtol=1e-5)


def test_greedy_continuation_is_the_same_padded_or_alone(policy) -> None:
    model, tokenizer = policy
    prompts = prompts_of(tokenizer)
    query_ids, query_mask = left_pad(prompts, tokenizer.pad_token_id)
    common = {"max_new_tokens": 5, "temperature": 0, "stop_token_ids": [-1],
              "pad_id": tokenizer.pad_token_id}
    batched = sample_responses(model, query_ids, query_mask, **common)
    for row, prompt in enumerate(prompts):
        alone = sample_responses(model, torch.tensor([prompt]),
                                 torch.ones(1, len(prompt), dtype=torch.bool), **common)
        assert batched[row].tolist() == alone[0].tolist()


def test_log_probs_use_temperature_scaled_logits(policy) -> None:
    model, tokenizer = policy
    query_ids, query_mask = left_pad(prompts_of(tokenizer)[:1], tokenizer.pad_token_id)
    response = torch.tensor([[5, 6, 7]])
    mask = torch.ones_like(response, dtype=torch.bool)
    logits = model(input_ids=torch.cat([query_ids, response], 1)).logits[:, -4:-1]
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, response[..., None])[..., 0]
    got = response_logprobs(model, query_ids, query_mask, response, mask, 0.7)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_rows_stop_at_their_first_stop_token(policy) -> None:
    model, tokenizer = policy
    query_ids, query_mask = left_pad(prompts_of(tokenizer), tokenizer.pad_token_id)
    torch.manual_seed(1)
    # Every token is a stop token: each row stops after one token, the loop after one step.
    vocabulary = list(range(len(tokenizer)))
    responses = sample_responses(model, query_ids, query_mask, max_new_tokens=8, temperature=1.0,
                                 stop_token_ids=vocabulary, pad_id=tokenizer.pad_token_id)
    assert responses.shape == (3, 1)


def test_values_are_causal(policy) -> None:
    model, tokenizer = policy
    value = value_model_from_policy(model, seed=0).eval()
    query_ids, query_mask = left_pad(prompts_of(tokenizer)[:1], tokenizer.pad_token_id)
    response = torch.tensor([[5, 6, 7, 8]])
    changed = torch.tensor([[5, 6, 7, 99]])
    mask = torch.ones_like(response, dtype=torch.bool)
    a = response_values(value, query_ids, query_mask, response, mask)
    b = response_values(value, query_ids, query_mask, changed, mask)
    torch.testing.assert_close(a, b)  # V(s_t) reads tokens before t only; the last one is unseen
    c = response_values(value, query_ids, query_mask, torch.tensor([[5, 99, 7, 8]]), mask)
    assert torch.equal(a[:, :2], c[:, :2]) and not torch.allclose(a[:, 2:], c[:, 2:])


def test_value_model_starts_from_the_policy_backbone(policy) -> None:
    model, _ = policy
    value = value_model_from_policy(model, seed=0)
    for key, tensor in model.base_model.state_dict().items():
        assert torch.equal(tensor, value.base_model.state_dict()[key]), key


def test_collect_rollout_scores_truncated_text(policy) -> None:
    model, tokenizer = policy
    value = value_model_from_policy(model, seed=0).eval()
    seen = {}

    def record(prompts, responses):
        seen["responses"] = responses
        return [float(len(r)) for r in responses]

    query_ids, query_mask = left_pad(prompts_of(tokenizer), tokenizer.pad_token_id)
    torch.manual_seed(0)
    rollout, texts = collect_rollout(
        model, frozen_copy(model), value, FunctionScorer(record, "record"), query_ids=query_ids,
        query_mask=query_mask, score_prompts=["a", "b", "c"], tokenizer=tokenizer,
        max_new_tokens=6, temperature=0.7, stop_token_ids=[tokenizer.eos_token_id])
    assert texts.responses == seen["responses"]
    assert rollout.scores.tolist() == [float(len(r)) for r in texts.responses]
    torch.testing.assert_close(rollout.logprobs * rollout.response_mask,
                               rollout.ref_logprobs * rollout.response_mask)


def test_each_row_stops_at_its_own_length_limit_and_the_mask_knows_it(policy) -> None:
    """trl 0.11.4's per-sample LengthSampler: row i samples at most limits[i] tokens; the
    response mask ends there too (pad == EOS must not look like a stop or a real token)."""
    model, tokenizer = policy
    query_ids, query_mask = left_pad(prompts_of(tokenizer), tokenizer.pad_token_id)
    limits = [2, 5, 3]
    common = {"temperature": 1.0, "stop_token_ids": [-1], "pad_id": tokenizer.pad_token_id,
              "row_seeds": [11, 12, 13]}
    responses = sample_responses(model, query_ids, query_mask, max_new_tokens=limits, **common)
    assert responses.shape[1] == 5
    uniform = sample_responses(model, query_ids, query_mask, max_new_tokens=5, **common)
    for row, limit in enumerate(limits):  # the same tokens up to the limit, padding after it
        assert responses[row, :limit].tolist() == uniform[row, :limit].tolist()
        assert (responses[row, limit:] == tokenizer.pad_token_id).all()
    rollout, _ = collect_rollout(
        model, frozen_copy(model), None, FunctionScorer(lambda p, r: [0.0] * len(r), "zero"),
        query_ids=query_ids, query_mask=query_mask, score_prompts=["a", "b", "c"],
        tokenizer=tokenizer, max_new_tokens=limits, temperature=1.0,
        stop_token_ids=[tokenizer.eos_token_id], row_seeds=[11, 12, 13])
    lengths = rollout.response_mask.sum(1)
    stopped = rollout.ended_with_eos
    assert all(int(n) == limit or bool(s)
               for n, limit, s in zip(lengths, limits, stopped, strict=True))
    assert all(int(n) <= limit for n, limit in zip(lengths, limits, strict=True))


def test_generation_passes_the_kv_cache_by_its_current_name(policy, caplog) -> None:
    """transformers 5.2x renamed `past_key_values` to `cache` and warns on the old name."""
    from transformers.utils import logging as hf_logging

    from rlhf.rl.generation import _kv_cache

    model, tokenizer = policy
    ids = torch.tensor([tokenizer("Rain")["input_ids"]])
    output = model(input_ids=ids, use_cache=True)
    expected = "cache" if "cache" in output.keys() else "past_key_values"  # older releases
    assert list(_kv_cache(output)) == [expected]
    hf_logging.get_logger("x").warning_once.cache_clear()  # let a warning show again
    handler_logger = hf_logging.get_logger("transformers")
    handler_logger.addHandler(caplog.handler)
    try:
        sample_responses(model, ids, torch.ones_like(ids, dtype=torch.bool), max_new_tokens=3,
                         temperature=1.0, stop_token_ids=[-1], pad_id=tokenizer.pad_token_id)
    finally:
        handler_logger.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


# -- cross-tokenizer scoring with the real GPT-2 and RoBERTa tokenizer files --------------------


def test_reward_model_reads_policy_text_as_its_own_sentence_pair(
        gpt2_policy_and_roberta_reward: tuple[Path, Path]) -> None:
    from transformers import AutoTokenizer

    policy, reward = gpt2_policy_and_roberta_reward
    policy_tokenizer = AutoTokenizer.from_pretrained(policy)
    reward_tokenizer = AutoTokenizer.from_pretrained(reward)
    scorer = RewardModelScorer.from_pretrained(str(reward), template="pair")

    prompt = "### Instruction:\nDescribe the sea.\n\n### Response:\n"
    response_ids = policy_tokenizer(" The sea is grey, café-coloured and cold — “vast”.")[
        "input_ids"]
    response = policy_tokenizer.decode(response_ids)
    expected = reward_tokenizer(prompt, response)["input_ids"]
    assert scorer.encode([prompt], [response]) == [expected]
    assert expected[0] == reward_tokenizer.cls_token_id and expected.count(2) == 3
    assert scorer([prompt], [response]).shape == (1,)


def test_reward_model_folder_from_train_reward_keeps_its_template(tmp_path: Path) -> None:
    model, tokenizer = load_reward_model("builtin:tiny-roberta", seed=0)
    model.config.rlhf_template = "concat"
    model.config.rlhf_separator = " || "
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    scorer = RewardModelScorer.from_pretrained(str(tmp_path / "rm"))
    assert (scorer.template, scorer.separator) == ("concat", " || ")
    assert scorer.encode(["p"], ["r"]) == [tokenizer("p || r")["input_ids"]]


def test_tiny_gpt2_folder_with_real_tokenizer_loads_as_policy(gpt2_tokenizer_dir: Path,
                                                              tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2,
                        n_positions=128)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "p")
    tokenizer.save_pretrained(tmp_path / "p")
    model, loaded = load_policy(str(tmp_path / "p"))
    assert loaded.padding_side == "left" and loaded.pad_token_id == loaded.eos_token_id
