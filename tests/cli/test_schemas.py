"""tool_schemas/: generated from the models, committed, and checked for staleness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from gravitex_mcp.catalog.models import CATALOG, MODEL_IDS
from gravitex_mcp.cli import schemas
from gravitex_mcp.request.arguments import DEFAULT_WAIT_SECONDS
from tests.request.test_translate_golden import GOLDEN
from tests.request.test_validation import REFUSALS


def _walk(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def test_committed_schemas_are_up_to_date() -> None:
    root = schemas.default_dir()
    assert schemas.stale_files(root, schemas.generate()) == [], (
        "tool_schemas/ is stale: run python -m gravitex_mcp.cli.schemas"
    )


def test_generation_is_deterministic() -> None:
    first, second = schemas.generate(), schemas.generate()
    assert first == second
    assert len(first) == 2 + len(MODEL_IDS)  # generate_video, generate_videos, models
    for text in first.values():
        assert text.endswith("}\n")
        assert not text.endswith("\n\n")


def test_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 1
    assert "generate_video.input.json (missing)" in capsys.readouterr().err
    assert schemas.main(["--dir", str(tmp_path)]) == 0
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 0
    edited = tmp_path / "models" / "sora-2.json"
    edited.write_text("{}\n", encoding="utf-8")
    extra = tmp_path / "models" / "sora-3.json"
    extra.write_text("{}\n", encoding="utf-8")
    capsys.readouterr()
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "models/sora-2.json (out of date)" in err
    assert "models/sora-3.json (no such model)" in err
    assert schemas.main(["--dir", str(tmp_path)]) == 0
    assert not extra.exists()
    assert schemas.main(["--check", "--dir", str(tmp_path)]) == 0


def test_input_schema_is_friendly_to_llm_clients() -> None:
    schema = schemas.input_schema()
    props = schema["properties"]
    assert schema["required"] == ["model", "prompt"]
    assert schema["additionalProperties"] is False
    assert props["model"]["enum"] == list(MODEL_IDS)
    assert props["wait_seconds"] == {
        **props["wait_seconds"],
        "default": DEFAULT_WAIT_SECONDS,
        "minimum": 0,
        "maximum": 600,
    }
    assert props["seed"]["maximum"] == 2147483647
    assert props["sample_count"]["minimum"] == 1
    assert props["aspect_ratio"]["enum"] == [
        "16:9",
        "9:16",
        "1:1",
        "4:3",
        "3:4",
        "21:9",
        "adaptive",
    ]
    for node in _walk(schema):
        assert not {"anyOf", "oneOf", "$ref", "$defs"} & set(node), node
    for name, prop in props.items():
        assert prop.get("description"), name
        assert prop.get("default", "set") is not None, name


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_model_schema_holds_only_what_the_model_takes(model_id: str) -> None:
    spec = CATALOG[model_id]
    schema = schemas.model_schema(spec)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]) == {"model", "prompt", *spec.arguments}
    assert schema["properties"]["model"]["const"] == model_id
    assert schema["required"] == ["model", "prompt"]
    for name, arg in spec.arguments.items():
        prop = schema["properties"][name]
        if arg.choices:
            assert prop["enum"][: len(arg.choices)] == list(arg.choices)
        if arg.minimum is not None:
            assert prop["minimum"] == arg.minimum


def test_every_doc_example_fits_both_schemas() -> None:
    input_validator = jsonschema.Draft202012Validator(schemas.input_schema())
    for case in GOLDEN:
        for variant in case.variants:
            input_validator.validate(variant)
            model_schema = schemas.model_schema(CATALOG[variant["model"]])
            jsonschema.Draft202012Validator(model_schema).validate(variant)


def test_model_schemas_refuse_what_validation_refuses() -> None:
    # Each refusal of a single argument's value or presence is also visible in the
    # model's schema (combination rules and prompt markers are beyond JSON Schema).
    schema_fields = {"duration", "resolution", "aspect_ratio", "fps", "camera_fixed", "seed"}
    checked = 0
    for param in REFUSALS:
        kwargs, field, _ = param.values
        assert isinstance(kwargs, dict)
        if field not in schema_fields or kwargs["model"] not in CATALOG:
            continue
        if set(kwargs) - {"model", "prompt", field} or "--" in kwargs.get("prompt", ""):
            continue
        validator = jsonschema.Draft202012Validator(schemas.model_schema(CATALOG[kwargs["model"]]))
        assert not validator.is_valid({"prompt": "p", **kwargs}), param.id
        checked += 1
    assert checked >= 8


def test_files_parse_as_json() -> None:
    for text in schemas.generate().values():
        json.loads(text)
