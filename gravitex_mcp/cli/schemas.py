"""The JSON Schema files under ``tool_schemas/``, generated from the pydantic models.

* ``generate_video.input.json``: :class:`~gravitex_mcp.request.arguments.GenerateVideoInput`,
  the tool's whole input.
* ``generate_videos.input.json``: the ``generate_videos`` tool's input (its jobs
  are ``generate_video``'s unified arguments).
* ``models/<model id>.json``: for one model, only the arguments it takes, with
  their enums and bounds narrowed to that model's valid values (from the
  catalog), ``model`` as a ``const`` and ``model``/``prompt`` required.

``python -m gravitex_mcp.cli.schemas`` (or ``gravitex-mcp schemas``) rewrites them;
``--check`` writes nothing and exits 1 listing every stale, missing or extra
file. The output is deterministic: fixed key order, two-space indent, UTF-8,
one trailing newline.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ..catalog.describe import describe_argument
from ..catalog.models import CATALOG, ModelSpec
from ..request.arguments import GenerateVideoInput, VideoArguments

INPUT_FILE: Final = "generate_video.input.json"
BATCH_INPUT_FILE: Final = "generate_videos.input.json"
MODELS_DIR: Final = "models"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

# Keys of a property that say which values are valid: replaced by the model's own.
_VALUE_KEYS: Final = ("enum", "minimum", "maximum", "pattern", "items", "minItems", "maxItems")


def input_schema() -> dict[str, Any]:
    """The JSON Schema of the ``generate_video`` tool's input."""
    return {"$schema": JSON_SCHEMA_DIALECT, **GenerateVideoInput.model_json_schema()}


def model_schema(spec: ModelSpec) -> dict[str, Any]:
    """The unified arguments ``spec`` takes, narrowed to its valid values."""
    base: dict[str, Any] = VideoArguments.model_json_schema()["properties"]
    model = {k: v for k, v in base["model"].items() if k != "enum"}
    properties: dict[str, Any] = {"model": {**model, "const": spec.id}, "prompt": base["prompt"]}
    for name in spec.arguments:
        prop = {k: v for k, v in base[name].items() if k not in _VALUE_KEYS}
        narrowed = describe_argument(spec, name)
        prop.update({k: narrowed[k] for k in _VALUE_KEYS if k in narrowed})
        if name == "size" and "enum" in prop:
            # Sizes are accepted in both spellings, whichever the catalog lists.
            sizes = prop["enum"]
            both = [
                *sizes,
                *(s.replace("x", "*") for s in sizes),
                *(s.replace("*", "x") for s in sizes),
            ]
            prop["enum"] = list(dict.fromkeys(both))
        if "note" in narrowed:
            prop["description"] = f"{prop['description']} On {spec.id}: {narrowed['note']}."
        properties[name] = prop
    description = " ".join((spec.summary + ".", *spec.notes))
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"generate_video arguments for {spec.id}",
        "description": description,
        "type": "object",
        "properties": properties,
        "required": ["model", "prompt"],
        "additionalProperties": False,
    }


def render(schema: Mapping[str, Any]) -> str:
    """``schema`` as the text written to disk."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """Every schema file: relative path (``/``-separated) -> text."""
    files = {INPUT_FILE: render(input_schema())}
    # Imported here: batch.py sits above the service layer, schemas.py below it.
    from ..service.batch import GenerateVideosInput

    batch = {"$schema": JSON_SCHEMA_DIALECT, **GenerateVideosInput.model_json_schema()}
    files[BATCH_INPUT_FILE] = render(batch)
    for spec in CATALOG.values():
        files[f"{MODELS_DIR}/{spec.id}.json"] = render(model_schema(spec))
    return files


def default_dir() -> Path:
    """The repository's ``tool_schemas`` in a source checkout, else ``./tool_schemas``."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / "tool_schemas"
    return Path.cwd() / "tool_schemas"


def stale_files(root: Path, files: Mapping[str, str]) -> list[str]:
    """Paths under ``root`` that differ from ``files``: missing, changed, or extra models."""
    stale = []
    for relative, text in files.items():
        path = root / relative
        if not path.is_file():
            stale.append(f"{relative} (missing)")
        elif path.read_text(encoding="utf-8") != text:
            stale.append(f"{relative} (out of date)")
    models = root / MODELS_DIR
    if models.is_dir():
        for path in sorted(models.glob("*.json")):
            relative = f"{MODELS_DIR}/{path.name}"
            if relative not in files:
                stale.append(f"{relative} (no such model)")
    return stale


def write_files(root: Path, files: Mapping[str, str]) -> list[str]:
    """Write ``files`` under ``root`` and remove extra model schemas; returns what changed."""
    changed = stale_files(root, files)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="\n")
    for path in (root / MODELS_DIR).glob("*.json"):
        if f"{MODELS_DIR}/{path.name}" not in files:
            path.unlink()
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the schema files (or ``--check`` them); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="gravitex-mcp schemas",
        description="Regenerate tool_schemas/ from the pydantic models and the model catalog.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is stale"
    )
    parser.add_argument("--dir", type=Path, help="the tool_schemas directory (default: the repo's)")
    options = parser.parse_args(argv)
    root: Path = options.dir or default_dir()
    files = generate()
    if options.check:
        stale = stale_files(root, files)
        if stale:
            lines = "\n".join(f"  {item}" for item in stale)
            sys.stderr.write(
                f"Stale JSON Schemas in {root}:\n{lines}\n"
                "Regenerate them with: python -m gravitex_mcp.cli.schemas\n"
            )
            return 1
        sys.stdout.write(f"{len(files)} JSON Schemas in {root} are up to date.\n")
        return 0
    changed = write_files(root, files)
    sys.stdout.write(f"Wrote {len(files)} JSON Schemas to {root} ({len(changed)} changed).\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
