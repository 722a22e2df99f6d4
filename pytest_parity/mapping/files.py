"""A Mapping as a JSON file: an automatic mapping computed once, reviewed, and reused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically
from pytest_parity.errors import PREFIX
from pytest_parity.mapping.rules import Mapping, MappingError, Rule
from pytest_parity.mapping.transforms import from_data, to_data

MAPPING_FORMAT = "pytest-parity-mapping/1"


def _rule_data(rule: Rule) -> dict[str, Any]:
    return {"canonical": list(rule.canonical_paths) if rule.split else rule.canonical,
            "torch": rule.torch, "layout": rule.layout, "collection": rule.collection,
            "transform": to_data(rule.transform),
            "split": to_data(rule.split) if rule.split else None}


def save_mapping(mapping: Mapping, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the mapping as JSON, atomically."""
    document = {"format": MAPPING_FORMAT, "architecture": mapping.architecture,
                "rules": [_rule_data(rule) for rule in mapping.rules]}
    text = json.dumps(document, indent=1) + "\n"
    return write_atomically(path, lambda tmp: tmp.write_text(text), overwrite=overwrite)


def load_mapping(path: str | Path) -> Mapping:
    """Read a mapping written by `save_mapping`.

    Raises:
        MappingError: not a mapping file of this format (naming the file and the problem).
    """
    try:
        document = json.loads(Path(path).read_text())
        if document.get("format") != MAPPING_FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {MAPPING_FORMAT!r}")
        rules = tuple(
            Rule(tuple(data["canonical"]) if data["split"] else data["canonical"],
                 data["torch"], data["layout"], data["collection"],
                 transform=from_data(data["transform"]),
                 split=from_data(data["split"]) if data["split"] else None)
            for data in document["rules"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MappingError(f"{PREFIX} {path}: not a readable mapping file ({error})") from None
    return Mapping(document["architecture"], rules)
