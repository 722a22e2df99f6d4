import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_parity.mapping import Mapping, MappingError, Rule
from pytest_parity.mapping.layer_rules import batch_norm_rules
from pytest_parity.mapping.transforms import OUT_IN_TO_IN_OUT, Chain, Reshape, Split, Transpose


@given(data=st.data())
def test_transforms_invert_exactly(data):
    array = data.draw(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4)))
    perm = tuple(data.draw(st.permutations(range(array.ndim))))
    moved_last = array.shape[perm[-1]]
    divisor = data.draw(st.sampled_from([d for d in range(1, moved_last + 1)
                                         if moved_last % d == 0]))
    transform = Chain((Transpose(perm), Reshape(-1, (divisor, moved_last // divisor))))
    restored = transform.inverse(transform.forward(array))
    assert restored.shape == array.shape
    assert restored.tobytes() == np.ascontiguousarray(array).tobytes()


def test_reshape_inverse_merges_the_axes():
    array = np.arange(2 * 12, dtype=np.float32).reshape(2, 12)
    split = Reshape(1, (3, 4))
    assert split.forward(array).shape == (2, 3, 4)
    assert np.array_equal(split.inverse(split.forward(array)), array)


def test_rule_placeholders_must_match_on_both_sides():
    with pytest.raises(MappingError, match="placeholders must be the same"):
        Rule("layer{i}/block{j}/kernel", "layer{i}.weight", "HWIO")


def test_pattern_rules_expand_and_unknown_keys_are_listed_together():
    mapping = Mapping("toy", (Rule("layer{i}/block{j}/w", "layer{i}.{j}.w", "C"),))
    arrays, layouts = mapping.torch_to_canonical({"layer1.0.w": np.zeros(1),
                                                  "layer12.3.w": np.ones(1)})
    assert sorted(arrays) == ["layer1/block0/w", "layer12/block3/w"]
    assert layouts == {"layer1/block0/w": "C", "layer12/block3/w": "C"}
    with pytest.raises(MappingError) as error:
        mapping.torch_to_canonical({"layer1.0.w": np.zeros(1), "fc.w": np.zeros(1),
                                    "layer1.x.w": np.zeros(1)})
    assert str(error.value) == ("[parity] toy: 2 torch keys have no rule: fc.w, layer1.x.w")


@given(data=st.data())
def test_split_then_per_piece_transform_inverts_exactly(data):
    parts = data.draw(st.integers(1, 4))
    heads = data.draw(st.integers(1, 3))
    width = heads * data.draw(st.integers(1, 3))
    array = data.draw(hnp.arrays(np.float32, (parts * width, data.draw(st.integers(1, 5)))))
    names = tuple(f"part{index}/kernel" for index in range(parts))
    rule = Rule(names if parts > 1 else names[0], "fused.weight", "IHD",
                split=Split(0, parts) if parts > 1 else None,
                transform=Chain((OUT_IN_TO_IN_OUT, Reshape(1, (heads, width // heads)))))
    mapping = Mapping("toy", (rule,))
    arrays, _ = mapping.torch_to_canonical({"fused.weight": array})
    assert sorted(arrays) == sorted(names)
    assert all(piece.shape == (array.shape[1], heads, width // heads) for piece in arrays.values())
    restored = mapping.canonical_to_torch(arrays)["fused.weight"]
    assert restored.tobytes() == array.tobytes() and restored.shape == array.shape


QKV_RULE = Rule(("blk{i}/query/kernel", "blk{i}/key/kernel", "blk{i}/value/kernel"),
                "blk.{i}.in_proj_weight", "IHD", split=Split(0, 3), transform=OUT_IN_TO_IN_OUT)


def test_fused_rule_splits_in_order_query_key_value():
    weight = np.repeat(np.arange(3, dtype=np.float32), 2)[:, None] * np.ones((6, 2), np.float32)
    arrays, layouts = Mapping("toy", (QKV_RULE,)).torch_to_canonical({"blk.4.in_proj_weight":
                                                                      weight})
    assert [float(arrays[f"blk4/{name}/kernel"][0, 0]) for name in ("query", "key", "value")] \
        == [0.0, 1.0, 2.0]
    assert set(layouts.values()) == {"IHD"}


def test_fused_rule_lists_missing_pieces():
    mapping = Mapping("toy", (QKV_RULE,))
    with pytest.raises(MappingError, match=r"blk.1.in_proj_weight needs blk1/value/kernel"):
        mapping.canonical_to_torch({"blk1/query/kernel": np.zeros((2, 2)),
                                    "blk1/key/kernel": np.zeros((2, 2))})


def test_several_canonical_paths_need_a_matching_split():
    with pytest.raises(MappingError, match="need a Split into as many parts"):
        Rule(("a/kernel", "b/kernel"), "ab.weight", "IO")
    with pytest.raises(MappingError, match="need a Split into as many parts"):
        Rule(("a/kernel", "b/kernel"), "ab.weight", "IO", split=Split(0, 3))


def test_flax_variables_round_trip_and_torch_only_buffers_stay_out():
    mapping = Mapping("toy", (Rule("conv/kernel", "conv.weight", "HWIO", transform=Transpose(
        (2, 3, 1, 0))), *batch_norm_rules("bn", "bn")))
    state = {"conv.weight": np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2),
             "bn.weight": np.ones(2, np.float32), "bn.bias": np.zeros(2, np.float32),
             "bn.running_mean": np.full(2, 0.5, np.float32),
             "bn.running_var": np.full(2, 2.0, np.float32),
             "bn.num_batches_tracked": np.array(7)}
    arrays, _ = mapping.torch_to_canonical(state)
    variables = mapping.canonical_to_flax(arrays)
    assert sorted(variables) == ["batch_stats", "params"]
    assert sorted(variables["batch_stats"]["bn"]) == ["mean", "var"]
    assert "num_batches_tracked" not in variables["params"]["bn"]
    back, _ = mapping.flax_to_canonical(variables)
    assert back.keys() == arrays.keys() - {"bn/num_batches_tracked"}
    assert all(np.array_equal(back[path], arrays[path]) for path in back)


def test_flax_variable_in_the_wrong_collection_is_named():
    mapping = Mapping("toy", tuple(batch_norm_rules("bn", "bn")))
    with pytest.raises(MappingError, match=r"params/bn/mean \(expected in 'batch_stats'\)"):
        mapping.flax_to_canonical({"params": {"bn": {"mean": np.zeros(2)}}})
