"""`rlhf.cli` on accelerate's FSDP2 code paths on a CPU, for tests only.

accelerate 1.15 sets up FSDP only on accelerator devices (`AcceleratorState` picks FSDP only
for its multi-GPU kinds): on a CPU it silently falls back to DDP, and rlhf refuses that
(`engines.check_engine`). torch's FSDP2 itself runs on CPU with gloo. This launcher lifts only
that choice: after the Accelerator is made, it marks the state FSDP and gives it the plugin
accelerate builds from the launcher's environment (FSDP_VERSION=2, FSDP_STATE_DICT_TYPE, ...).
Everything else is accelerate's own code: `prepare` (fully_shard, the optimizer re-pointed at
the shards), `no_sync`, `clip_grad_norm_`, `get_state_dict`, `save_fsdp_model` and friends.

    ACCELERATE_USE_FSDP=true FSDP_VERSION=2 ... torchrun --nproc_per_node 2 \\
        tests/engine/fsdp_on_cpu.py train-critic-free --config ...
"""

from __future__ import annotations

import sys

import accelerate
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

_make_accelerator = accelerate.Accelerator.__init__


def _with_fsdp_on_cpu(self, *args, **kwargs) -> None:
    _make_accelerator(self, *args, **kwargs)
    if self.state.distributed_type == DistributedType.MULTI_CPU:
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.state.distributed_type = DistributedType.FSDP
        plugin = FullyShardedDataParallelPlugin()
        if self.state.mixed_precision != "no":  # as AcceleratorState does for its FSDP kinds
            plugin.set_mixed_precision(self.state.mixed_precision)
        self.state.fsdp_plugin = plugin


accelerate.Accelerator.__init__ = _with_fsdp_on_cpu

if __name__ == "__main__":
    from rlhf.cli import main

    sys.exit(main(sys.argv[1:]))
