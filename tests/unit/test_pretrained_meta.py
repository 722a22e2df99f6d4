"""A torch factory that refuses the meta device (transformers' `from_pretrained`) still gives the
checkpoint loader its structure: built as it is, then moved to the meta device; a factory that
fails either way is one `[parity]` line naming it and its error."""

import numpy as np
import pytest

from pytest_parity.checkpoint.torch_files import expected_state_shapes, meta_build
from pytest_parity.errors import ParityError

torch = pytest.importorskip("torch")

LINEAR_SHAPES = {"weight": ((3, 2), "float32"), "bias": ((3,), "float32")}


def refuses_meta():
    if torch.empty(0).is_meta:
        raise RuntimeError("built only on a real device")
    return torch.nn.Linear(2, 3)


def always_fails():
    raise OSError("weights.bin: no such file")


def test_a_factory_that_refuses_the_meta_device_is_built_then_moved_to_it():
    model = meta_build(refuses_meta)
    assert all(tensor.is_meta for tensor in model.state_dict().values())
    assert expected_state_shapes(model) == LINEAR_SHAPES


def test_a_factory_that_fails_either_way_is_named_with_its_error_in_one_line():
    with pytest.raises(ParityError) as error:
        meta_build(always_fails)
    message = str(error.value)
    assert message.startswith("[parity] ") and "\n" not in message
    assert f"{__name__}.always_fails" in message
    assert "OSError: weights.bin: no such file" in message


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The folder of a small transformers BertModel, saved as from_pretrained reads it."""
    pytest.importorskip("transformers")
    from pytest_parity.torchvision_compat import import_torchvision

    import_torchvision()  # transformers imports torchvision, broken on a CPU-only torch here
    from transformers import BertConfig, BertModel

    # return_dict=False: the torch side returns (last_hidden_state, pooler_output).
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37,
                        max_position_embeddings=64, return_dict=False)
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def _from_pretrained(folder):
    from transformers import BertModel

    return BertModel.from_pretrained(folder, attn_implementation="eager").eval()


def test_from_pretrained_is_built_and_gives_the_state_shapes(pretrained):
    folder = pretrained
    model = meta_build(lambda: _from_pretrained(folder))
    shapes = expected_state_shapes(model)
    assert shapes["embeddings.word_embeddings.weight"] == ((99, 32), "float32")
    assert shapes["encoder.layer.1.intermediate.dense.weight"] == ((37, 32), "float32")
    assert shapes == {key: (tuple(value.shape), "float32")
                      for key, value in _from_pretrained(folder).state_dict().items()}
    assert all(tensor.is_meta for tensor in model.state_dict().values())


def test_a_from_pretrained_pair_loads_its_weights_on_both_sides(pretrained, tmp_path):
    """checkpoint_for draws the pair's checkpoint from its torch factory (the saved weights);
    load_pair puts them into both models, which then agree."""
    pytest.importorskip("flax")
    from functools import partial

    from models.bert.flax_model import Bert
    from models.bert.mapping import bert_mapping
    from pytest_parity.inputs import Input
    from pytest_parity.registry import Pair
    from pytest_parity.run.loading import checkpoint_for, load_pair

    folder = pretrained
    tokens = (2, 7)
    pair = Pair("tiny_bert_pretrained", partial(_from_pretrained, folder),
                partial(Bert, hidden=32, layers=2, heads=4, intermediate=37, vocab=99,
                        max_positions=64),
                bert_mapping("tiny_bert_pretrained"),
                inputs=(Input("input_ids", tokens, "int64", high=99),
                        Input("attention_mask", tokens, "int64", mask=True),
                        Input("token_type_ids", tokens, "int64", high=2)))
    checkpoint = checkpoint_for(pair, 0, tmp_path)
    loaded = load_pair(pair, checkpoint, "cpu", "float32")
    saved = _from_pretrained(folder).state_dict()
    for key, value in loaded.torch_model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    inputs = pair.example_inputs(0)
    torch_out = loaded.torch_forward(inputs)
    flax_out = loaded.flax_forward(inputs)
    np.testing.assert_allclose(flax_out["last_hidden_state"], torch_out[0], rtol=1e-5,
                               atol=2e-5)
    np.testing.assert_allclose(flax_out["pooler_output"], torch_out[1], rtol=1e-5, atol=2e-5)
