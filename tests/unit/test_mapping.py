import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_parity.mapping import Mapping, MappingError, Rule
from pytest_parity.transforms import Chain, Reshape, Transpose


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
