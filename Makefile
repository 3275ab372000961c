# Each target sets up .venv itself: torch first (pinned for these CPU machines; pick another
# with `make test TORCH=torch==2.5.1` or TORCH_INDEX=...), then the package with its dev extra.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PIP_FLAGS ?= --quiet --disable-pip-version-check
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast test-extended demo bench bench-trl bench-learning lint clean

$(BIN)/rlhf: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) "$(TORCH)"
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $(BIN)/rlhf

setup: $(BIN)/rlhf

# Fast unit tests first, then the end-to-end runs on tiny models.
test: setup
	$(BIN)/python -m pytest -q -m "not slow and not extended" -p no:cacheprovider
	$(BIN)/python -m pytest -q -m "slow and not extended" -p no:cacheprovider

# Checks kept out of `make test` for its 15-minute budget (e.g. FSDP2 PPO against one process).
test-extended: setup
	$(BIN)/python -m pytest -q -m extended -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

# The whole pipeline offline on tiny models: SFT, reward model, PPO, report.html.
demo: setup
	$(BIN)/rlhf demo

# Each benchmark prints a markdown table; BENCHMARKS.md records them with command and machine.
bench: setup
	$(BIN)/python benchmarks/reward_throughput.py --batch-size 8 --steps 3
	$(BIN)/python benchmarks/ppo_step.py --new-tokens 32
	$(BIN)/python benchmarks/update_flops.py --new-tokens 32
	$(BIN)/python benchmarks/ppo_scaling.py --iterations 2
	$(BIN)/python benchmarks/optimizer_step.py
	$(BIN)/python benchmarks/critic_free_vs_ppo.py --seeds 3
	$(BIN)/python benchmarks/bf16_speed.py --rounds 3 --iterations 2
	$(BIN)/python benchmarks/update_flops.py --new-tokens 32 --precision bf16
	$(BIN)/python benchmarks/bf16_numerics.py

# The same workloads through Hugging Face TRL, measured in the same run (BENCHMARKS.md). Not part
# of `bench`: it installs TRL, into its own venvs benchmarks/.venv-trl-* (never into .venv), and
# takes about an hour on 2 CPUs.
bench-trl: setup
	$(BIN)/python benchmarks/compare_trl.py --setup
	$(BIN)/python benchmarks/compare_trl.py

# Gold-reward benchmark (issue 17, Gao et al. 2022): proxy reward models vs a gold reward, RL,
# DPO and best-of-n against sqrt(KL); 6 minutes on 2 quiet CPUs, more on a busy one (LEARNING.md).
bench-learning: setup
	$(BIN)/python benchmarks/learning.py

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
