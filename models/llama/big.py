"""The zoo's big Llama (the pair `llama_2gb`): 2.1 GB of float32 weights per side, for streamed
parity (issue 28: `assert_streamed_close`, a model that does not fit in memory).

BIG_LLAMA is transformers' LlamaForCausalLM at vocabulary 32000, hidden 1024, MLP 2816, 16
query heads and 8 key/value heads of 64, 39 decoder layers, untied head: 525,679,616
parameters, 2,102,718,464 bytes in float32 (`weight_bytes`). Its blocks are small: a decoder
layer 47,194,112 bytes, the embedding table and the head 131,072,000 bytes each.

Its weights are not the models' own initialisation (2 GB drawn by torch or by Flax in
memory) but a seeded canonical checkpoint, drawn and written one tensor at a time
(`write_checkpoint`: never more than one tensor in memory, the largest 131 MB). Each tensor
comes from its own generator, numpy's default_rng((seed, index)), index its place in
`tensor_specs`' order, so one tensor is redrawn without the others. The scales keep every
layer's activations near unit size and the logits spread (std about 2.5 over 32000 tokens,
top-2 gaps far above float32 noise), at any depth: the projections that read the normalised
stream (q, k, v, gate, up) at std 1/sqrt(fan in); the two that write into the residual
stream (o_proj, down_proj) at 1/sqrt(fan in x 2 x layers), as GPT-2 scales them, so the
stream grows like the square root of depth, not exponentially; the embedding at std 1; the
head at 2.5/sqrt(hidden); every RMSNorm weight 1 + 0.2 x N(0, 1), so that a norm that
multiplies by (1 + w) in place of w is seen (as models/llama/small.py).

`config(...)` gives the same architecture at any size: the tests use a few layers of hidden
64 (a checkpoint written in milliseconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.llama.mapping import llama_mapping

ARCHITECTURE = "llama_2gb"
GENERATOR = "big-llama-v1"  # the drawing recipe's version: a change makes a new source
PROJECTIONS = {"self_attn/q_proj": ("hidden", "query"), "self_attn/k_proj": ("hidden", "kv"),
               "self_attn/v_proj": ("hidden", "kv"), "self_attn/o_proj": ("query", "hidden"),
               "mlp/gate_proj": ("hidden", "intermediate"),
               "mlp/up_proj": ("hidden", "intermediate"),
               "mlp/down_proj": ("intermediate", "hidden")}
RESIDUAL_WRITERS = ("self_attn/o_proj", "mlp/down_proj")
NORM_WEIGHT_STD = 0.2
LOGIT_STD = 2.5


def config(*, layers: int = 39, hidden: int = 1024, intermediate: int = 2816,
           vocab: int = 32000, heads: int = 16, kv_heads: int = 8) -> dict[str, Any]:
    """The settings of this Llama at a size, named as transformers' LlamaConfig names them."""
    return {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}


BIG_LLAMA = config()
MAX_POSITIONS = 2048


def _widths(settings: dict[str, Any]) -> dict[str, int]:
    head_dim = settings["hidden_size"] // settings["num_attention_heads"]
    return {"hidden": settings["hidden_size"], "intermediate": settings["intermediate_size"],
            "query": head_dim * settings["num_attention_heads"],
            "kv": head_dim * settings["num_key_value_heads"]}


def tensor_specs(settings: dict[str, Any] = BIG_LLAMA) -> list[tuple[str, tuple[int, ...], str]]:
    """(canonical path, shape, layout) of every tensor, in drawing order: the embedding, each
    layer as transformers orders it, the final norm, the head. Shapes are canonical (a
    kernel [in, out]); layouts are the mapping's."""
    widths = _widths(settings)
    hidden, vocab = widths["hidden"], settings["vocab_size"]
    specs: list[tuple[str, tuple[int, ...]]] = [("model/embed_tokens/embedding", (vocab, hidden))]
    for index in range(settings["num_hidden_layers"]):
        layer = f"model/layers/{index}"
        specs.append((f"{layer}/input_layernorm/weight", (hidden,)))
        specs += [(f"{layer}/{name}/kernel", (widths[into], widths[out]))
                  for name, (into, out) in PROJECTIONS.items() if name.startswith("self_attn")]
        specs.append((f"{layer}/post_attention_layernorm/weight", (hidden,)))
        specs += [(f"{layer}/{name}/kernel", (widths[into], widths[out]))
                  for name, (into, out) in PROJECTIONS.items() if name.startswith("mlp")]
    specs += [("model/norm/weight", (hidden,)), ("lm_head/kernel", (hidden, vocab))]
    mapping = llama_mapping(ARCHITECTURE)
    laid_out = []
    for path, shape in specs:
        rule = mapping.rule_for(path)
        if rule is None:
            raise AssertionError(f"no rule of the llama mapping names {path}")
        laid_out.append((path, shape, rule.layout))
    return laid_out


def weight_bytes(settings: dict[str, Any] = BIG_LLAMA) -> int:
    """The float32 weights' bytes of one side (torch's parameters, the port's variables)."""
    return 4 * sum(math.prod(shape) for _, shape, _ in tensor_specs(settings))


def _std(path: str, shape: tuple[int, ...], layers: int) -> float:
    if path.endswith("embedding"):
        return 1.0
    if path == "lm_head/kernel":
        return LOGIT_STD / math.sqrt(shape[0])
    widen = 2 * layers if any(f"/{name}/" in path for name in RESIDUAL_WRITERS) else 1
    return 1.0 / math.sqrt(shape[0] * widen)


def draw(path: str, shape: tuple[int, ...], index: int, seed: int, layers: int) -> np.ndarray:
    """One tensor of the seeded checkpoint, float32, from its own generator."""
    generator = np.random.default_rng((seed, index))
    array = generator.standard_normal(shape, dtype=np.float32)
    if path.endswith("norm/weight"):
        array *= NORM_WEIGHT_STD
        array += 1.0
    else:
        array *= _std(path, shape, layers)
    return array


def seeded_tensors(seed: int = 0, settings: dict[str, Any] = BIG_LLAMA
                   ) -> Iterator[tuple[str, np.ndarray, str]]:
    """The seeded checkpoint's (canonical path, array, layout), drawn one at a time (the
    generator keeps no array between two of them)."""
    layers = settings["num_hidden_layers"]
    for index, (path, shape, layout) in enumerate(tensor_specs(settings)):
        yield path, draw(path, shape, index, seed, layers), layout


def source(seed: int) -> str:
    return f"seeded:{seed}:{GENERATOR}"


def write_checkpoint(path: str | Path, seed: int = 0, *, overwrite: bool = False,
                     settings: dict[str, Any] = BIG_LLAMA,
                     architecture: str = ARCHITECTURE) -> Path:
    """The seeded canonical checkpoint written at `path`, tensor by tensor (save_tensors:
    atomic; an existing file is kept unless overwrite=True)."""
    from pytest_parity.checkpoint import save_tensors

    return save_tensors(path, architecture, seeded_tensors(seed, settings),
                        source=source(seed), overwrite=overwrite)


def torch_model(settings: dict[str, Any] = BIG_LLAMA) -> Any:
    """transformers' LlamaForCausalLM of `settings` (eager attention, untied head), as
    transformers initialises it: nothing else touches the weights, so that a streamed check
    builds it with parameters on the meta device and loads them from the checkpoint."""
    from pytest_parity.torchvision_compat import import_torchvision

    import_torchvision()  # transformers imports torchvision, broken on a CPU-only torch here
    import transformers

    llama_config = transformers.LlamaConfig(
        **settings, max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False,
        attn_implementation="eager")
    return transformers.LlamaForCausalLM(llama_config).eval()


def nnx_model(settings: dict[str, Any] = BIG_LLAMA) -> Any:
    """The NNX port of `settings` (its variables come from the checkpoint; built abstractly
    by the plugin, nnx.eval_shape, so no 2 GB is initialised)."""
    from flax import nnx

    from models.llama.nnx_model import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**settings), rngs=nnx.Rngs(0))


def checkpoint_problem(path: Path, seed: int, settings: dict[str, Any] = BIG_LLAMA) -> str | None:
    """Why the file at `path` is not this seed's intact checkpoint, if it is not: read and
    hashed one tensor at a time (never the whole model in memory), its recorded digest
    checked, its source and its first tensor this seed's draw."""
    from pytest_parity.checkpoint import tensor_source
    from pytest_parity.errors import CheckpointError

    try:
        tensors = tensor_source(path)
    except CheckpointError as error:
        return error.problems[0]
    try:
        if tensors.source != source(seed):
            return f"its source is {tensors.source!r}, not {source(seed)!r}"
        specs = tensor_specs(settings)
        if tensors.paths() != sorted(name for name, _, _ in specs):
            return "its tensors are not this configuration's"
        first, shape, _ = specs[0]
        stored = tensors.read([first])[first]
        if stored.dtype != np.float32 or not np.array_equal(
                stored, draw(first, shape, 0, seed, settings["num_hidden_layers"])):
            return f"{first} is not seed {seed}'s draw in float32"
        del stored
        for name, _, _ in specs:  # one at a time, each hashed as it is read
            tensors.read([name])
        tensors.verify()
    except CheckpointError:
        return "its content does not match its digest"
    finally:
        tensors.close()
    return None


def cached_checkpoint(folder: str | Path, seed: int = 0, settings: dict[str, Any] = BIG_LLAMA
                      ) -> tuple[Path, float | None]:
    """The seeded checkpoint in `folder`: the file there if it is intact and this seed's,
    else written anew (replacing it); the path and the seconds writing took (None when the
    file was served)."""
    import time

    size = "" if settings == BIG_LLAMA else "-" + "-".join(map(str, settings.values()))
    path = Path(folder) / f"{ARCHITECTURE}{size}-seed{seed}-{GENERATOR}.h5"
    if path.is_file() and checkpoint_problem(path, seed, settings) is None:
        return path, None
    started = time.perf_counter()
    write_checkpoint(path, seed, overwrite=True, settings=settings)
    return path, time.perf_counter() - started
