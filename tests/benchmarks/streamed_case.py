"""The big Llama's streamed parity check in a process of its own, for
tests/benchmarks/test_streamed_memory.py.

    python tests/benchmarks/streamed_case.py imports
    python tests/benchmarks/streamed_case.py streamed CHECKPOINT MEMORY

`imports`: the floor of any streamed check, torch, jax, flax, transformers and
models.llama.big imported and the torch model built with its parameters on the meta device
(its buffers real, as the streamed check builds it). `streamed`: assert_streamed_close of
the pair `llama_2gb` on two prompts of 16 tokens, reading CHECKPOINT with at most MEMORY
bytes of weights per side. Prints one JSON line: peak resident memory (MB), the weights'
bytes per side (MB), and for `streamed` the verdict, the largest block and the seconds.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PROMPTS = (2, 16)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def peak_rss_mb() -> float:
    """This process's resident high-water mark. Not getrusage's ru_maxrss: on Linux a child
    inherits its parent's (pytest's) maximum across fork and exec."""
    return _status_kb("VmHWM") / 1024


def _inputs():
    import numpy as np

    from models.llama.big import BIG_LLAMA

    generator = np.random.default_rng(5)
    ids = generator.integers(0, BIG_LLAMA["vocab_size"], PROMPTS)
    mask = np.ones(PROMPTS, np.int64)
    mask[1, 12:] = 0  # the second prompt padded at the end
    positions = np.tile(np.arange(PROMPTS[1]), (PROMPTS[0], 1))
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}


def imports() -> dict:
    import flax  # noqa: F401
    import jax  # noqa: F401

    from models.llama import big
    from pytest_parity.run.streamed_torch import empty_model

    started = time.perf_counter()
    model = empty_model(big.torch_model, "float32")  # as the streamed check builds it
    built_s = time.perf_counter() - started
    devices = {parameter.device.type for parameter in model.parameters()}
    buffers = {buffer.device.type for buffer in model.buffers()}
    assert devices == {"meta"} and buffers == {"cpu"}, (devices, buffers)
    return {"peak_rss_mb": peak_rss_mb(), "rss_mb": _status_kb("VmRSS") / 1024,
            "meta_build_s": built_s, "weights_mb": big.weight_bytes() / 2**20}


def streamed(checkpoint: str, memory: str) -> dict:
    import jax  # noqa: F401
    import torch  # noqa: F401

    from models.llama import big
    from pytest_parity import assert_streamed_close, registry

    pair = registry.get(big.ARCHITECTURE)
    started = time.perf_counter()
    result = assert_streamed_close(pair, _inputs(), checkpoint=checkpoint, memory=memory)
    return {"peak_rss_mb": peak_rss_mb(), "weights_mb": big.weight_bytes() / 2**20,
            "passed": bool(result.passed), "largest_block_mb": result.largest_block_bytes / 2**20,
            "blocks": len(result.blocks), "check_s": time.perf_counter() - started}


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    print(json.dumps({"imports": imports, "streamed": streamed}[mode](*arguments)))
