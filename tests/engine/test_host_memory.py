"""A CPU run keeps the host memory it frees, so each training step reuses the pages of the one
before instead of faulting in fresh ones (rlhf.engine.host_memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Three bf16 training steps of a small LM-shaped model, after two warm-up steps: prints the
# minor page faults they took. The setting is process-wide, so each case gets its own process.
STEPS = """
import resource, sys, torch
sys.path.insert(0, {src!r})
if {keep}:
    from rlhf.engine.host_memory import keep_freed_host_memory
    assert keep_freed_host_memory() and keep_freed_host_memory()  # idempotent
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Embedding(30000, 256), torch.nn.Linear(256, 1024),
                            torch.nn.GELU(), torch.nn.Linear(1024, 30000))
optimizer = torch.optim.AdamW(model.parameters())
ids = torch.randint(0, 30000, (4, 32))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(ids).float().logsumexp(-1).mean()
    loss.backward(); optimizer.step(); optimizer.zero_grad()
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(keep: bool) -> int:
    result = subprocess.run([sys.executable, "-c", STEPS.format(src=str(SRC), keep=keep)],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.slow  # two fresh Python processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_freed_host_memory_instead_of_faulting_in_pages() -> None:
    default, kept = page_faults(keep=False), page_faults(keep=True)
    assert default > 10_000  # glibc's defaults: fresh pages for every large tensor, every step
    assert kept < default // 5  # measured: 390,000 against 15,000-45,000
