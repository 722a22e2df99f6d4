"""A Mapping as a JSON file: an automatic mapping computed once, reviewed, and reused.

`ignored` (torch keys dropped) and `flax_only` (Flax variables no torch tensor gives) are
written only when the mapping has some, and a rule's `inferred` only when true, so a file of a
mapping without them is as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically
from pytest_parity.mapping.rules import Mapping, MappingError, Rule
from pytest_parity.mapping.transforms import from_data, to_data

MAPPING_FORMAT = "pytest-parity-mapping/1"


def _rule_data(rule: Rule) -> dict[str, Any]:
    return {"canonical": list(rule.canonical_paths) if rule.split else rule.canonical,
            "torch": rule.torch, "layout": rule.layout, "collection": rule.collection,
            "transform": to_data(rule.transform),
            "split": to_data(rule.split) if rule.split else None,
            **({"inferred": True} if rule.inferred else {})}


def save_mapping(mapping: Mapping, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the mapping as JSON, atomically."""
    document: dict[str, Any] = {"format": MAPPING_FORMAT, "architecture": mapping.architecture,
                                "rules": [_rule_data(rule) for rule in mapping.rules]}
    document.update({name: list(getattr(mapping, name)) for name in _NAME_LISTS
                     if getattr(mapping, name)})
    text = json.dumps(document, indent=1) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text), overwrite=overwrite)


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null", dict: "object"}
_RULE_FIELDS = ("canonical", "torch", "layout", "collection", "transform", "split")
_NAME_LISTS = ("ignored", "flax_only")  # optional top-level lists of names


def _shown(value: Any) -> str:
    """A value of the file for a message: cut to a line (a damaged file may nest deep)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 60 else f"{text[:57]}..."


def _read_document(path: Path) -> dict[str, Any]:
    """The file's JSON object, its format checked.

    Raises:
        ValueError: unreadable, not UTF-8, not JSON, nested too deep, or not this format.
    """
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise ValueError(f"cannot be read ({error.strerror or type(error).__name__})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte {error.start})") from None
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if not isinstance(document, dict):
        raise ValueError(f"holds a JSON {_JSON_TYPES.get(type(document), 'value')}, not an object "
                         f"{{'format': {MAPPING_FORMAT!r}, 'architecture': ..., 'rules': [...]}}")
    if document.get("format") != MAPPING_FORMAT:
        raise ValueError(f"format {_shown(document.get('format'))}, expected {MAPPING_FORMAT!r}")
    unknown = sorted(set(document) - {"format", "architecture", "rules", *_NAME_LISTS})
    if unknown:
        raise ValueError(f"unknown fields {unknown}")
    if not isinstance(document.get("architecture"), str) or not document["architecture"]:
        raise ValueError("'architecture' must be a name, got "
                         f"{_shown(document.get('architecture'))}")
    if not isinstance(document.get("rules"), list) or not document["rules"]:
        raise ValueError("'rules' must be a non-empty list of rules")
    for name in _NAME_LISTS:
        names = document.get(name, ["-"])
        if not isinstance(names, list) or not names or not all(
                isinstance(value, str) and value for value in names):
            raise ValueError(f"{name!r} must be a non-empty list of non-empty strings (or "
                             f"absent), got {_shown(names)}")
    return document


def _rule(data: Any) -> Rule:
    """A rule from its JSON object, every field present and of its type.

    Raises:
        ValueError, MappingError: a field missing, unknown, of the wrong type or invalid.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {_JSON_TYPES.get(type(data), 'value')}, not a rule object")
    if sorted(set(data) - {"inferred"}) != sorted(_RULE_FIELDS):
        missing = [name for name in _RULE_FIELDS if name not in data]
        unknown = sorted(set(data) - {*_RULE_FIELDS, "inferred"})
        raise ValueError(f"missing fields {missing}" if missing else f"unknown fields {unknown}")
    fused = data["split"] is not None
    try:
        transform = from_data(data["transform"])
    except ValueError as error:
        raise ValueError(f"'transform': {error}") from None
    try:
        split = from_data(data["split"], ("split",)) if fused else None
    except ValueError as error:
        raise ValueError(f"'split': {error}") from None
    canonical = data["canonical"]
    if fused and not (isinstance(canonical, list) and all(isinstance(p, str) for p in canonical)):
        raise ValueError(f"'canonical' of a split rule must be a list of paths, got "
                         f"{_shown(canonical)}")
    if not fused and not isinstance(canonical, str):
        raise ValueError(f"'canonical' must be a path (a string), got {_shown(canonical)}")
    if not isinstance(data.get("inferred", False), bool):
        raise ValueError(f"'inferred' must be true or false, got {_shown(data['inferred'])}")
    for name in ("torch", "layout", "collection"):
        if not isinstance(data[name], str) and (name != "collection" or data[name] is not None):
            raise ValueError(f"{name!r} must be a string, got {_shown(data[name])}")
    return Rule(tuple(canonical) if fused else canonical, data["torch"], data["layout"],
                data["collection"], transform=transform, split=split,
                inferred=data.get("inferred", False))


def load_mapping(path: str | Path) -> Mapping:
    """Read a mapping written by `save_mapping`; every field is checked, none is guessed.

    Raises:
        MappingError: not a mapping file of this format, naming the file, and the rule and
            field at fault.
    """
    where = f"{path}: not a readable mapping file"
    try:
        document = _read_document(Path(path))
    except ValueError as error:
        raise MappingError(f"{where} ({error})") from None
    rules = []
    for index, data in enumerate(document["rules"]):
        try:
            rules.append(_rule(data))
        except (ValueError, MappingError) as error:
            reason = error.message if isinstance(error, MappingError) else str(error)
            raise MappingError(f"{where} (rule {index}: {reason})") from None
    try:
        return Mapping(document["architecture"], tuple(rules),
                       **{name: tuple(document.get(name, ())) for name in _NAME_LISTS})
    except MappingError as error:
        raise MappingError(f"{where} ({error.message})") from None
