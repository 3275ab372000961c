"""Typed run configurations: dataclasses loaded from YAML with dotted `key=value` overrides.

Each stage has one top-level dataclass (`RewardConfig`, ...) made of sections (`run`, `data`,
`model`, `train`). OmegaConf does the loading, merging and type conversion; `loading` adds what
OmegaConf does not: an unknown key names the closest valid key, and every value is checked by
the dataclass that owns it (`__post_init__`) before any model is loaded.

`common` holds the sections stages share, `rl` those the RL stages share, one module per stage
holds the rest (`reward`, `sft`, `ppo`, `critic_free`, `dpo`), and `docs` prints a stage's keys (`rlhf config STAGE`; imported only when it runs).
Imports only the standard library, OmegaConf and rlhf.errors (DESIGN.md dependency rule).
"""

from rlhf.config.common import (
    BatchTrainConfig,
    ExampleDataConfig,
    LoraConfig,
    OptimizerConfig,
    RunConfig,
)
from rlhf.config.critic_free import (
    CriticFreeAlgoConfig,
    CriticFreeConfig,
    GroupGenerateConfig,
)
from rlhf.config.dpo import (
    DPOAlgoConfig,
    DPOConfig,
    DPOModelConfig,
    DPOTrainConfig,
    PairDataConfig,
)
from rlhf.config.loading import BOOLEAN_WORDS, load_config, merge_config, to_yaml
from rlhf.config.ppo import PPOAlgoConfig, PPOConfig, PPOLoraConfig, PPOModelConfig
from rlhf.config.reward import (
    PreferenceDataConfig,
    RewardConfig,
    RewardModelConfig,
    RewardTrainConfig,
)
from rlhf.config.rl import (
    GenerateConfig,
    PromptDataConfig,
    RLEvalConfig,
    RLModelConfig,
    RLTrainConfig,
)
from rlhf.config.sft import (
    SFT_COLUMNS,
    SFTConfig,
    SFTDataConfig,
    SFTModelConfig,
    SFTTrainConfig,
)

__all__ = [
    "BOOLEAN_WORDS",
    "SFT_COLUMNS",
    "BatchTrainConfig",
    "CriticFreeAlgoConfig",
    "CriticFreeConfig",
    "DPOAlgoConfig",
    "DPOConfig",
    "DPOModelConfig",
    "DPOTrainConfig",
    "ExampleDataConfig",
    "GenerateConfig",
    "GroupGenerateConfig",
    "LoraConfig",
    "OptimizerConfig",
    "PairDataConfig",
    "PPOAlgoConfig",
    "PPOConfig",
    "PPOLoraConfig",
    "PPOModelConfig",
    "PreferenceDataConfig",
    "PromptDataConfig",
    "RLModelConfig",
    "RLEvalConfig",
    "RLTrainConfig",
    "RewardConfig",
    "RewardModelConfig",
    "RewardTrainConfig",
    "RunConfig",
    "SFTConfig",
    "SFTDataConfig",
    "SFTModelConfig",
    "SFTTrainConfig",
    "load_config",
    "merge_config",
    "to_yaml",
]
