"""Distributed engines: which one accelerate set up, the combinations rlhf refuses at start and
what each message tells the user to do, the launcher files in configs/accelerate/, a checkpoint
resumed only under the engine that wrote it, and the two helpers sharded runs need (a frozen
model filled in from the main process; a plain copy of a model from gathered weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType
from torch.distributed.fsdp import StateDictType
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf.config import RunConfig, SFTConfig
from rlhf.engine.engines import (
    check_engine,
    check_requested_engine,
    engine_of,
    keep_float32_parameters,
    requested_engine,
    trained_networks,
)
from rlhf.engine.run import Run
from rlhf.errors import UserError
from rlhf.saving import plain_copy

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


def fake_accelerator(kind: DistributedType = DistributedType.NO, *, processes: int = 1,
                     fsdp2: bool = False, state_dict_type=StateDictType.FULL_STATE_DICT):
    plugin = SimpleNamespace(state_dict_type=state_dict_type)
    return SimpleNamespace(distributed_type=kind, num_processes=processes, is_fsdp2=fsdp2,
                           state=SimpleNamespace(fsdp_plugin=plugin))


FSDP2 = fake_accelerator(DistributedType.FSDP, processes=2, fsdp2=True)


# -- which engine -------------------------------------------------------------------------------


@pytest.mark.parametrize(("accelerator", "name"), [
    (fake_accelerator(), "single"),
    (fake_accelerator(DistributedType.MULTI_CPU, processes=2), "ddp"),
    (fake_accelerator(DistributedType.MULTI_GPU, processes=8), "ddp"),
    (FSDP2, "fsdp2"),
    (fake_accelerator(DistributedType.FSDP, processes=2), "fsdp1"),
    (fake_accelerator(DistributedType.DEEPSPEED, processes=2), "deepspeed"),
])
def test_the_engine_is_read_from_accelerate(accelerator, name: str) -> None:
    assert engine_of(accelerator) == name


def test_a_real_single_process_accelerator_is_single() -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    assert engine_of(Accelerator(cpu=True)) == "single"


@pytest.mark.parametrize(("environ", "asked"), [
    ({}, None),
    ({"ACCELERATE_USE_FSDP": "true"}, "fsdp"),
    ({"ACCELERATE_USE_FSDP": "false"}, None),
    ({"ACCELERATE_USE_DEEPSPEED": "True"}, "deepspeed"),
])
def test_the_launchers_request_is_read_from_its_environment(environ, asked) -> None:
    assert requested_engine(environ) == asked


def test_ppo_with_a_separate_value_model_trains_two_networks() -> None:
    def config(value):
        return SimpleNamespace(model=SimpleNamespace(value=value))

    assert trained_networks("ppo", config("separate")) == 2
    assert trained_networks("ppo", config("shared")) == 1
    assert trained_networks("critic_free", SimpleNamespace(model=SimpleNamespace())) == 1
    assert trained_networks("sft", SFTConfig()) == 1


# -- refusals -----------------------------------------------------------------------------------


def ppo(value: str = "shared", lora: int = 0) -> SimpleNamespace:
    return SimpleNamespace(model=SimpleNamespace(value=value), lora=SimpleNamespace(r=lora))


def refusal(accelerator, stage: str = "critic_free", config=None, **environ) -> str:
    with pytest.raises(UserError) as caught:
        check_engine(accelerator, stage=stage, config=config or ppo(), environ=environ)
    return str(caught.value)


def test_deepspeed_is_refused_with_the_reason_and_what_to_use() -> None:
    with pytest.raises(UserError, match="DeepSpeed is not supported") as caught:
        check_requested_engine({"ACCELERATE_USE_DEEPSPEED": "true"})
    assert "no_sync" in str(caught.value)
    assert "configs/accelerate/fsdp.yaml" in str(caught.value)
    message = refusal(fake_accelerator(DistributedType.DEEPSPEED, processes=2))
    assert "DeepSpeed is not supported" in message
    check_requested_engine({})  # nothing asked: nothing refused


def test_fsdp_without_a_gpu_is_refused_instead_of_falling_back_to_ddp() -> None:
    message = refusal(fake_accelerator(DistributedType.MULTI_CPU, processes=2),
                      ACCELERATE_USE_FSDP="true")
    assert "accelerate set up DDP" in message
    assert "configs/accelerate/ddp_2proc_cpu.yaml" in message


def test_fsdp1_is_refused_in_favour_of_fsdp2() -> None:
    assert "fsdp_version: 2" in refusal(fake_accelerator(DistributedType.FSDP, processes=2),
                                        ACCELERATE_USE_FSDP="true")


def test_fsdp2_refuses_two_trained_networks_and_says_model_value_shared() -> None:
    assert "set model.value=shared" in refusal(FSDP2, "ppo", ppo("separate"))


def test_fsdp2_refuses_ppos_shared_value_head_with_lora() -> None:
    """The LoRA reference runs the LM inside the sharded root on its own, which FSDP2 cannot."""
    assert "Set lora.r=0" in refusal(FSDP2, "ppo", ppo("shared", lora=8))


def test_fsdp2_refuses_stages_that_save_from_one_process() -> None:
    for stage, command in (("sft", "train-sft"), ("reward", "train-reward"), ("dpo", "train-dpo")):
        message = refusal(FSDP2, stage)
        assert message.startswith(command) and "DDP" in message


def test_fsdp2_refuses_sharded_checkpoints_that_would_be_unpickled() -> None:
    sharded = fake_accelerator(DistributedType.FSDP, processes=2, fsdp2=True,
                               state_dict_type=StateDictType.SHARDED_STATE_DICT)
    assert "fsdp_state_dict_type must be FULL_STATE_DICT" in refusal(sharded)


@pytest.mark.parametrize("stage", ["ppo", "critic_free"])
def test_what_rlhf_supports_passes(stage: str) -> None:
    check_engine(FSDP2, stage=stage, config=ppo(), environ={"ACCELERATE_USE_FSDP": "true"})
    check_engine(FSDP2, stage="critic_free", config=ppo(lora=8), environ={})
    check_engine(fake_accelerator(DistributedType.MULTI_CPU, processes=2), stage="ppo",
                 config=ppo("separate", lora=8), environ={})
    check_engine(fake_accelerator(), stage="sft", config=SFTConfig(), environ={})


def test_a_run_refuses_fsdp_at_start_on_this_cpu(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    run_config = RunConfig(output_dir=str(tmp_path / "run"), progress=False)
    with pytest.raises(UserError, match="FSDP was asked for"):
        Run(run_config, SFTConfig(run=run_config), stage="sft")
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_is_resumed_only_under_the_kind_of_engine_that_wrote_it(
        tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 2, "engine": "fsdp2"}))
    run_config = RunConfig(output_dir=str(tmp_path / "run"), progress=False, resume=True)
    run = Run(run_config, SFTConfig(run=run_config), stage="sft")
    with pytest.raises(UserError, match="written under fsdp2 and this run uses single"):
        run.load_latest({}, {}, {})


def test_fsdp2_keeps_float32_parameters_under_mixed_precision() -> None:
    """As one process and DDP: float32 parameters under autocast, the frozen models' way, so
    the KL to an equal reference is exactly 0 (with bf16 FSDP parameters it was 5e-4)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    bf16 = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16)
    sharded = fake_accelerator(DistributedType.FSDP, processes=2, fsdp2=True)
    sharded.mixed_precision, sharded.state.fsdp_plugin.mixed_precision_policy = "bf16", bf16
    keep_float32_parameters(sharded)
    assert sharded.state.fsdp_plugin.mixed_precision_policy == MixedPrecisionPolicy()
    replicated = fake_accelerator(DistributedType.MULTI_CPU, processes=2)
    replicated.mixed_precision, replicated.state.fsdp_plugin.mixed_precision_policy = "bf16", bf16
    keep_float32_parameters(replicated)
    assert replicated.state.fsdp_plugin.mixed_precision_policy is bf16


# -- the launcher files -------------------------------------------------------------------------


def test_the_launcher_files_are_all_there() -> None:
    assert {p.name for p in LAUNCHER_CONFIGS} == {
        "ddp_2proc_cpu.yaml", "fsdp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"}


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_each_launcher_file_loads_in_accelerate_and_says_what_was_verified(path: Path) -> None:
    config = load_config_from_file(str(path))
    header = path.read_text(encoding="utf-8").split("compute_environment")[0]
    assert f"--config_file configs/accelerate/{path.name}" in header  # the command to use it
    assert "Verified here" in header or "Not run" in header
    assert config.num_processes == 2


def test_the_fsdp_file_asks_for_what_rlhf_supports() -> None:
    config = load_config_from_file(str(ROOT / "configs/accelerate/fsdp.yaml"))
    fsdp = config.fsdp_config
    assert config.distributed_type == DistributedType.FSDP
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_cpu_ram_efficient_loading"] is True


def test_the_deepspeed_files_partition_at_load_and_gather_to_save() -> None:
    zero3 = load_config_from_file(str(ROOT / "configs/accelerate/deepspeed_zero3.yaml"))
    zero2 = load_config_from_file(str(ROOT / "configs/accelerate/deepspeed_zero2.yaml"))
    assert zero3.deepspeed_config["zero_stage"] == 3
    assert zero3.deepspeed_config["zero3_init_flag"] is True
    assert zero3.deepspeed_config["zero3_save_16bit_model"] is True
    assert zero2.deepspeed_config["zero_stage"] == 2


# -- plain copies from gathered weights ---------------------------------------------------------


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64,
                                      n_positions=32)).eval()


def test_a_plain_copy_holds_the_gathered_weights_with_ties_kept() -> None:
    model = tiny_gpt2()
    copy = plain_copy(model, {k: v.clone() for k, v in model.state_dict().items()})
    ids = torch.randint(0, 64, (2, 8))
    assert torch.equal(copy(ids).logits, model(ids).logits)
    assert copy.lm_head.weight is copy.transformer.wte.weight
    assert type(copy) is GPT2LMHeadModel


def test_a_plain_copy_of_a_lora_model_merges_like_the_model() -> None:
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_gpt2(), peft.LoraConfig(r=4, target_modules=["c_attn"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # adapters that change the output
    copy = plain_copy(model, {k: v.clone() for k, v in model.state_dict().items()})
    ids = torch.randint(0, 64, (2, 8))
    assert torch.allclose(copy(input_ids=ids).logits, model(input_ids=ids).logits)
    merged = copy.merge_and_unload()
    assert torch.allclose(merged(ids).logits, model(input_ids=ids).logits, atol=1e-5)


# -- a frozen model filled in from the main process ---------------------------------------------

MATERIALISE = """
import torch, torch.distributed as dist
from accelerate import Accelerator
from transformers import GPT2Config, GPT2LMHeadModel
from rlhf.engine.engines import materialise_from_main
accelerator = Accelerator(cpu=True)
torch.manual_seed(accelerator.process_index)  # different weights on each process
model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=32, n_positions=16))
if accelerator.process_index == 1:
    model = model.to("meta")  # as transformers 4.x left it under cpu_ram_efficient_loading
model = materialise_from_main(model.eval(), accelerator)
weights = torch.cat([p.detach().flatten() for p in model.parameters()])
everyone = [torch.empty_like(weights) for _ in range(2)]
dist.all_gather(everyone, weights)
assert torch.equal(everyone[0], everyone[1]), "processes differ"
assert model.lm_head.weight is model.transformer.wte.weight, "ties lost"
print("materialised", accelerator.process_index)
"""


@pytest.mark.slow
def test_a_frozen_model_left_on_meta_gets_the_main_processs_weights(tmp_path: Path) -> None:
    script = tmp_path / "materialise.py"
    script.write_text(MATERIALISE)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    result = subprocess.run([torchrun, "--nproc_per_node", "2", str(script)], cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("materialised") == 2
