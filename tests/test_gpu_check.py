"""benchmarks/gpu_check.sh on a machine without CUDA: a message and exit status 0 (on a GPU machine it
runs a fine-tuning epoch, which is the GPU session's job, not the test suite's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: gpu_check.sh would run its epoch")
def test_gpu_check_without_cuda_says_so_and_exits_0() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU visible to torch" in done.stdout and done.stderr == ""
