import re

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


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Rule("", "fc.weight", "IO"), "the canonical path must be a non-empty string"),
    (lambda: Rule((), "fc.weight", "IO"), "the canonical path must be a non-empty string"),
    (lambda: Rule("fc/kernel", "", "IO"), "the torch key must be a non-empty string"),
    (lambda: Rule("fc/kernel", "fc.weight", ""), "the layout must be a non-empty string"),
    (lambda: Rule("fc/kernel", "fc.weight", "IO", collection=""), "the collection must be"),
    (lambda: Rule("fc/kernel", "fc.weight", "IO", transform=None), "must be a transform, got"),
    (lambda: Rule(("a",), "ab.weight", "IO", split=Split(0, 1)),
     "a split must be a Split into 2 or more parts"),
    (lambda: Rule(("a", "a"), "ab.weight", "IO", split=Split(0, 2)),
     "a canonical path is listed twice"),
    (lambda: Mapping("toy", (Rule("fc/kernel", "fc.weight", "IO"),
                             Rule("fc/bias", "fc.weight", "O"))),
     "toy: rules 0 and 1 both name the torch key 'fc.weight'"),
    (lambda: Mapping("toy", (Rule("fc/kernel", "fc.weight", "IO"),
                             Rule("fc/kernel", "fc.bias", "O"))),
     "toy: rules 0 and 1 both name the canonical path 'fc/kernel'"),
], ids=["empty-canonical", "no-canonical-paths", "empty-torch", "empty-layout",
        "empty-collection", "not-a-transform", "split-of-one", "piece-twice",
        "torch-key-twice", "canonical-path-twice"])
def test_a_rule_that_says_nothing_or_collides_is_refused(make, message):
    with pytest.raises(MappingError, match=re.escape(message)) as error:
        make()
    assert str(error.value).startswith("[parity] ")


def _mapping_file(tmp_path):
    from pytest_parity.mapping import save_mapping
    from pytest_parity.mapping.layer_rules import attention_rules
    from tests.support.tinynet import MAPPING

    mapping = Mapping("toy", (*MAPPING.rules, *attention_rules("attn", "attn", num_heads=2,
                                                                embed_dim=4)))
    return mapping, save_mapping(mapping, tmp_path / "mapping.json")


def _set(where, value):
    """An edit of the document: the value at `where` ('fused': the rule with a split) set."""
    def edit(document):
        *parents, last = where
        node = document
        for step in parents:
            node = next(rule for rule in node if rule["split"]) if step == "fused" else node[step]
        node[last] = value
        return document
    return edit


# (id, edit of the JSON document or raw bytes, words of the message after the file's name)
BAD_MAPPING_FILES = [
    ("top-list", lambda d: [d], "holds a JSON array, not an object"),
    ("top-string", lambda d: "rules", "holds a JSON string, not an object"),
    ("top-null", lambda d: None, "holds a JSON null, not an object"),
    ("unknown-top-field", _set(["comment"], "x"), "unknown fields ['comment']"),
    ("architecture-null", _set(["architecture"], None), "'architecture' must be a name"),
    ("rules-object", _set(["rules"], {}), "'rules' must be a non-empty list of rules"),
    ("rules-empty", _set(["rules"], []), "'rules' must be a non-empty list of rules"),
    ("rule-not-object", _set(["rules", 1], "conv1.weight"), "rule 1: a JSON string, not a rule"),
    ("field-missing", lambda d: d["rules"][2].pop("layout") and d, "rule 2: missing fields "
     "['layout']"),
    ("field-unknown", _set(["rules", 2, "note"], 1), "rule 2: unknown fields ['note']"),
    ("canonical-empty", _set(["rules", 0, "canonical"], ""), "rule 0: rule 'conv1.weight' <-> "
     "'': the canonical path must be a non-empty string"),
    ("canonical-number", _set(["rules", 0, "canonical"], 5), "rule 0: 'canonical' must be a "
     "path (a string), got 5"),
    ("split-canonical-empty", _set(["rules", "fused", "canonical"], []), "the canonical path "
     "must be a non-empty string (several: a non-empty tuple)"),
    ("split-zero-parts", _set(["rules", "fused", "split", "parts"], 0), "'split': 'parts' must "
     "be an integer >= 2, got 0"),
    ("split-parts-mismatch", _set(["rules", "fused", "split", "parts"], 2), "several canonical "
     "paths need a Split into as many parts"),
    ("torch-null", _set(["rules", 0, "torch"], None), "rule 0: 'torch' must be a string, got "
     "None"),
    ("layout-number", _set(["rules", 0, "layout"], 5), "rule 0: 'layout' must be a string"),
    ("collection-list", _set(["rules", 0, "collection"], []), "'collection' must be a string"),
    ("transform-null", _set(["rules", 0, "transform"], None), "rule 0: 'transform': expected a "
     "transform {'kind': one of identity, transpose, reshape, flip, chain, ...}, got None"),
    ("transform-unknown", _set(["rules", 0, "transform", "kind"], "rotate"), "rule 0: "
     "'transform': expected a transform"),
    ("transform-field-missing", _set(["rules", 0, "transform"], {"kind": "transpose"}),
     "'transform': a transpose has the fields ['perm'], got []"),
    ("perm-not-a-permutation", _set(["rules", 0, "transform", "perm"], [0, 0, 1, 2]),
     "'perm' must order the axes 0..3, each once, got [0, 0, 1, 2]"),
    ("perm-booleans", _set(["rules", 0, "transform", "perm"], [True, False]),
     "'perm' must be a non-empty list of integers >= 0"),
    ("chain-empty", _set(["rules", "fused", "transform", "steps"], []),
     "'steps' must be a non-empty list of transforms"),
    ("split-as-transform", _set(["rules", 0, "transform"], {"kind": "split", "axis": 0,
                                                            "parts": 2}), "'transform': "
     "expected a transform"),
    ("placeholders-differ", _set(["rules", 0, "canonical"], "conv{i}/kernel"),
     "the placeholders must be the same on both sides"),
    ("canonical-twice", _set(["rules", 0, "canonical"], "fc/bias"), "toy: rules 0 and 7 both "
     "name the canonical path 'fc/bias'"),
    ("ignored-string", _set(["ignored"], "embeddings.position_ids"), "'ignored' must be a "
     "non-empty list of non-empty strings (or absent), got 'embeddings.position_ids'"),
    ("ignored-empty", _set(["ignored"], []), "'ignored' must be a non-empty list"),
    ("ignored-number", _set(["ignored"], [5]), "'ignored' must be a non-empty list of "
     "non-empty strings (or absent), got [5]"),
    ("ignored-empty-name", _set(["ignored"], [""]), "'ignored' must be a non-empty list"),
    ("ignored-twice", _set(["ignored"], ["a", "a"]), "toy: ignored lists 'a' twice"),
    ("ignored-has-rule", _set(["ignored"], ["fc.weight"]), "toy: torch key 'fc.weight' has a "
     "rule and is ignored"),
    ("flax-only-null", _set(["flax_only"], None), "'flax_only' must be a non-empty list of "
     "non-empty strings (or absent), got None"),
    ("flax-only-object", _set(["flax_only"], {"params": "head"}), "'flax_only' must be"),
    ("flax-only-bare", _set(["flax_only"], ["kernel"]), "toy: flax_only names Flax variables "
     "as 'collection/path', got 'kernel'"),
    ("flax-only-has-rule", _set(["flax_only"], ["params/fc/kernel"]), "toy: Flax variable "
     "'params/fc/kernel' has a rule and is listed as flax_only"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "JSON nested too deep"),
    ("not-utf8", b'{"format": "\xff"}', "not UTF-8 text (byte 12)"),
    ("not-json", b"{'format': 1}", "Expecting property name enclosed in double quotes"),
    ("huge-integer", b'{"format": 1' + b"0" * 5000 + b"}", "Exceeds the limit"),
]


@pytest.mark.parametrize(("damage", "message"), [case[1:] for case in BAD_MAPPING_FILES],
                         ids=[case[0] for case in BAD_MAPPING_FILES])
def test_a_damaged_mapping_file_is_named_with_the_rule_and_field(tmp_path, damage, message):
    import json

    from pytest_parity.mapping import load_mapping

    _, path = _mapping_file(tmp_path)
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.raises(MappingError) as error:
        load_mapping(path)
    assert str(error.value).startswith(f"[parity] {path}: not a readable mapping file (")
    assert message in str(error.value)


def test_a_mapping_file_loads_equal_and_a_torch_only_rule_stays_torch_only(tmp_path):
    from pytest_parity.mapping import load_mapping

    mapping, path = _mapping_file(tmp_path)
    loaded = load_mapping(path)
    assert loaded == mapping
    assert loaded.rule_for("bn1.num_batches_tracked", "torch").collection is None
