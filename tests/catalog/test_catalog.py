"""The model catalog: complete, consistent, and saying what the docs say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.catalog.describe import describe
from gravitex_mcp.catalog.models import (
    ARGUMENT_TYPES,
    CATALOG,
    MODE_ARGUMENTS,
    MODEL_IDS,
    PROMPT_MARKERS,
    get_model,
    models,
    takers,
)
from gravitex_mcp.domain import Family, Mode
from gravitex_mcp.errors import InvalidArgumentsError
from gravitex_mcp.request.arguments import VideoArguments

# Every model id in upstream-api/video-generation.txt, in doc order.
DOC_IDS = (
    "sora-2",
    "veo-3.0-fast-generate-001",
    "veo-3.0-generate-preview",
    "veo-3.1-fast-generate-preview",
    "veo-3.1-generate-preview",
    "wan2.5-t2v-preview",
    "wan2.5-i2v-preview",
    "doubao-seedance-1-0-lite-t2v-250428",
    "doubao-seedance-1-0-lite-i2v-250428",
    "doubao-seedance-1-0-pro-250528",
    "doubao-seedance-1-5-pro-251215",
    "doubao-seedance-1-5-pro-251215-noAudio",
    "doubao-seaweed-1-0-t2v-250428",
    "wan2-1-14b-i2v-250417",
    "wan2-1-14b-flf2v-250417",
)
SEEDANCE_FAMILY = DOC_IDS[7:]
SPECS = [pytest.param(spec, id=spec.id) for spec in CATALOG.values()]


def test_every_doc_model_is_in_the_catalog_in_doc_order() -> None:
    assert MODEL_IDS == DOC_IDS
    assert tuple(CATALOG) == DOC_IDS


@pytest.mark.parametrize("spec", SPECS)
def test_every_model_has_a_family_modes_and_a_summary(spec: catalog.ModelSpec) -> None:
    assert isinstance(spec.family, Family)
    assert spec.modes
    assert spec.modes <= set(Mode)
    assert spec.summary


@pytest.mark.parametrize("spec", SPECS)
def test_describe_is_json_and_names_valid_values(spec: catalog.ModelSpec) -> None:
    data = describe(spec)
    assert json.loads(json.dumps(data)) == data
    assert data["id"] == spec.id
    assert data["family"] == spec.family.value
    assert data["modes"] == [m.value for m in Mode if m in spec.modes]
    assert set(data["arguments"]) == {"model", "prompt", *spec.arguments}
    for name, arg in data["arguments"].items():
        assert arg["type"] in ("string", "integer", "boolean", "array"), name
        if arg["type"] == "integer":
            assert "enum" in arg or {"minimum", "maximum"} <= set(arg), name
        if name in ("resolution", "aspect_ratio", "person_generation"):
            assert arg["enum"], name


@pytest.mark.parametrize("spec", SPECS)
def test_argument_data_is_consistent(spec: catalog.ModelSpec) -> None:
    for name, arg in spec.arguments.items():
        kind = ARGUMENT_TYPES[name]
        for choice in arg.choices:
            expected = {"integer": int, "string": str, "boolean": bool}[kind]
            assert type(choice) is expected, (name, choice)
        if arg.minimum is not None and arg.maximum is not None:
            assert arg.minimum <= arg.maximum
    # Media arguments come from the modes, and only from them.
    from_modes = {n for mode in spec.modes for n in MODE_ARGUMENTS[mode]}
    assert from_modes == {n for n in spec.arguments if n in catalog.MODE_DEFINING_ARGUMENTS}
    for rule in spec.exclusions:
        for setting in (rule.first, rule.second):
            assert spec.takes(setting.argument)
            if setting.value is not None:
                assert setting.value in spec.arguments[setting.argument].choices
    for advisory in spec.advisories:
        assert spec.takes(advisory.setting.argument)


@pytest.mark.parametrize(
    "spec", [pytest.param(s, id=s.id) for s in CATALOG.values() if s.size_from is not None]
)
def test_size_tables_use_valid_values(spec: catalog.ModelSpec) -> None:
    derivation = spec.size_from
    assert derivation is not None
    assert "size" in spec.arguments
    for key, size in derivation.table.items():
        for name, value in zip(derivation.by, key, strict=True):
            assert value in spec.arguments[name].choices
        size_choices = spec.arguments["size"].choices
        if size_choices:
            assert catalog.format_size(size, spec.size_separator) in size_choices
    # Every valid aspect ratio picks some size.
    ratios = {key[-1] for key in derivation.table}
    assert ratios == set(spec.arguments["aspect_ratio"].choices)


def test_unified_argument_names_match_the_pydantic_model() -> None:
    fields = set(VideoArguments.model_fields) - {"model", "prompt"}
    assert fields == set(ARGUMENT_TYPES)


def test_prompt_markers_name_real_arguments_once() -> None:
    markers = PROMPT_MARKERS[Family.SEEDANCE]
    names = [name for marker in markers for name in marker.names]
    assert len(names) == len(set(names))
    assert {m.argument for m in markers} <= set(ARGUMENT_TYPES)
    assert set(names) == {
        "ratio",
        "dur",
        "duration",
        "rs",
        "resolution",
        "fps",
        "framespersecond",
        "seed",
        "wm",
        "watermark",
        "cf",
        "camerafixed",
    }


def test_get_model_and_models() -> None:
    assert get_model("sora-2").family is Family.SORA
    with pytest.raises(InvalidArgumentsError) as info:
        get_model("sora-3")
    assert info.value.problems[0].field == "model"
    assert "veo-3.1-generate-preview" in info.value.problems[0].message
    assert [m.id for m in models(Family.VEO)] == list(DOC_IDS[1:5])
    assert [m.id for m in models(Family.SEEDANCE)] == list(SEEDANCE_FAMILY)
    assert len(models()) == 15


# --- what the docs say ---------------------------------------------------------


def _choices(model_id: str, argument: str) -> tuple[object, ...]:
    return CATALOG[model_id].arguments[argument].choices


def test_documented_values() -> None:
    assert _choices("sora-2", "duration") == (4, 8, 12)
    assert _choices("sora-2", "size") == ("720x1280", "1280x720")
    for model_id in DOC_IDS[1:5]:
        assert _choices(model_id, "duration") == (4, 6, 8)
        assert _choices(model_id, "aspect_ratio") == ("16:9", "9:16")
        assert _choices(model_id, "resolution") == ("720p", "1080p")
        count = CATALOG[model_id].arguments["sample_count"]
        assert (count.minimum, count.maximum) == (1, 4)
    for model_id in ("wan2.5-t2v-preview", "wan2.5-i2v-preview"):
        assert _choices(model_id, "duration") == (5, 10)
        assert _choices(model_id, "resolution") == ("480p", "720p", "1080p")
    for model_id in ("doubao-seedance-1-5-pro-251215", "doubao-seedance-1-5-pro-251215-noAudio"):
        duration = CATALOG[model_id].arguments["duration"]
        assert (duration.minimum, duration.maximum) == (4, 12)
        assert _choices(model_id, "resolution") == ("480p", "720p")
    assert "adaptive" not in _choices("doubao-seedance-1-0-lite-t2v-250428", "aspect_ratio")
    assert "adaptive" in _choices("doubao-seedance-1-0-lite-i2v-250428", "aspect_ratio")
    for spec in CATALOG.values():
        if "seed" in spec.arguments:
            seed = spec.arguments["seed"]
            assert (seed.minimum, seed.maximum) == (0, 2147483647)


def test_who_takes_what() -> None:
    assert takers("camera_fixed") == [
        "doubao-seedance-1-0-lite-t2v-250428",
        "doubao-seedance-1-0-lite-i2v-250428",
    ]
    assert takers("last_frame") == [
        "veo-3.1-fast-generate-preview",
        "veo-3.1-generate-preview",
        "doubao-seedance-1-0-lite-i2v-250428",
        "doubao-seedance-1-5-pro-251215",
        "doubao-seedance-1-5-pro-251215-noAudio",
        "wan2-1-14b-flf2v-250417",
    ]
    assert takers("reference_images") == ["doubao-seedance-1-0-lite-i2v-250428"]
    assert takers("remix_from_video_id") == ["sora-2"]
    assert takers("size") == ["sora-2", "wan2.5-t2v-preview"]
    assert takers("return_last_frame") == list(SEEDANCE_FAMILY)
    assert takers("callback_url") == list(SEEDANCE_FAMILY)
    assert takers("person_generation") == list(DOC_IDS[1:5])
    assert takers("audio_url") == ["wan2.5-t2v-preview", "wan2.5-i2v-preview"]
    assert "image" not in CATALOG["doubao-seedance-1-0-lite-t2v-250428"].arguments
    assert "resolution" not in CATALOG["sora-2"].arguments


def test_modes_follow_the_docs() -> None:
    t2v, ff, flf, ref, remix = (
        Mode.TEXT_TO_VIDEO,
        Mode.FIRST_FRAME,
        Mode.FIRST_LAST_FRAME,
        Mode.REFERENCE_IMAGES,
        Mode.REMIX,
    )
    expected = {
        "sora-2": {t2v, ff, remix},
        "veo-3.0-fast-generate-001": {t2v, ff},
        "veo-3.0-generate-preview": {t2v, ff},
        "veo-3.1-fast-generate-preview": {t2v, ff, flf},
        "veo-3.1-generate-preview": {t2v, ff, flf},
        "wan2.5-t2v-preview": {t2v},
        "wan2.5-i2v-preview": {ff},
        "doubao-seedance-1-0-lite-t2v-250428": {t2v},
        "doubao-seedance-1-0-lite-i2v-250428": {ff, flf, ref},
        "doubao-seedance-1-0-pro-250528": {t2v, ff},
        "doubao-seedance-1-5-pro-251215": {t2v, ff, flf},
        "doubao-seedance-1-5-pro-251215-noAudio": {t2v, ff, flf},
        "doubao-seaweed-1-0-t2v-250428": {t2v},
        "wan2-1-14b-i2v-250417": {ff},
        "wan2-1-14b-flf2v-250417": {flf},
    }
    assert {m.id: set(m.modes) for m in CATALOG.values()} == expected


def test_fast_veo_models_carry_the_audio_note() -> None:
    noted = [m.id for m in CATALOG.values() if m.advisories]
    assert noted == ["veo-3.0-fast-generate-001", "veo-3.1-fast-generate-preview"]
    described = describe(CATALOG["veo-3.1-fast-generate-preview"])
    assert "always include audio" in described["arguments"]["generate_audio"]["note"]


def test_wan_t2v_size_table_holds_the_doc_sizes() -> None:
    sizes = describe(CATALOG["wan2.5-t2v-preview"])["derived_sizes"]
    assert sizes["720p 16:9"] == "1280*720"
    assert sizes["1080p 16:9"] == "1920*1080"
    assert "480p 4:3" not in sizes


def test_parse_size() -> None:
    assert catalog.parse_size("1280x720") == (1280, 720)
    assert catalog.parse_size("1280*720") == (1280, 720)
    for bad in ("", "1280X720", "1280", "0x720", "1280x", "x720", "12.5x7", "1280 x 720"):
        assert catalog.parse_size(bad) is None, bad


def test_code_has_no_per_model_branches() -> None:
    # The rules are data: no module outside the catalog names a model id.
    package = Path(catalog.__file__).parents[1]
    for module in (
        "request/validation.py",
        "request/translate.py",
        "request/prepare.py",
        "cli/schemas.py",
        "request/arguments.py",
    ):
        source = (package / module).read_text(encoding="utf-8")
        for model_id in MODEL_IDS:
            assert f'"{model_id}"' not in source, (module, model_id)
