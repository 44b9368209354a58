"""``gravitex-mcp demo --model M`` works for every model of the catalog.

The demo's own driver runs against a server in memory on the simulator with a
fake clock (fast), once per model; the values it sends come from the catalog
and image-only models get generated images.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gravitex_mcp import images
from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.cli.demo import PROMPT, _drive
from gravitex_mcp.cli.demo_inputs import MODE_PREFERENCE, demo_arguments, demo_mode, png_bytes
from gravitex_mcp.domain import Mode
from gravitex_mcp.request.arguments import VideoArguments
from gravitex_mcp.request.prepare import prepare_request
from gravitex_mcp.server.app import build_server
from gravitex_mcp.upstream.choose import simulated_upstream
from tests.conftest import FakeClock, simulator_settings
from tests.proc import clean_env, run_cli


def test_the_catalog_has_the_fifteen_models_the_demo_is_tested_with() -> None:
    assert len(catalog.MODEL_IDS) == 15


def test_a_generated_png_has_the_asked_pixel_size() -> None:
    data = png_bytes(720, 1280)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert images.sniff_image_type(data) == "image/png"
    assert images.image_dimensions(data) == (720, 1280)


@pytest.mark.parametrize("model", catalog.MODEL_IDS)
async def test_demo_drives_every_model_to_a_saved_video(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = catalog.get_model(model)
    settings = simulator_settings(tmp_path, simulator_seconds=6)
    clock = FakeClock()
    upstream = simulated_upstream(settings, clock=clock.monotonic)
    try:
        server = build_server(settings, upstream=upstream, clock=clock)
        path = await _drive(server, model)
        sim = upstream.simulator
        assert sim is not None
        (task,) = sim.tasks.values()
    finally:
        assert upstream.simulator is not None
        upstream.simulator.close()
    assert path.is_file()
    assert path.parent == settings.output_dir.resolve()
    assert path.read_bytes()[4:8] == b"ftyp"
    assert task.model == model
    out = capsys.readouterr().out
    assert f"Generating with {model}" in out
    # The mode the demo picked is the one the model offers, images included.
    needed = catalog.MODE_ARGUMENTS[demo_mode(spec)]
    if Mode.TEXT_TO_VIDEO not in spec.modes:
        assert needed, f"{model} needs an image and the demo supplied one"
    sent = demo_arguments(spec, PROMPT)
    for name in needed:
        assert name in sent


@pytest.mark.slow
def test_demo_keeps_its_journal_in_an_explicit_state_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state = tmp_path / "demo-state"
    env = clean_env(
        home, GRAVITEX_OUTPUT_DIR=str(tmp_path / "videos"), GRAVITEX_SIMULATOR_SECONDS="0"
    )
    result = run_cli(["demo", "--model", "sora-2", "--state-dir", str(state)], env, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(state.glob("*.sqlite3")), sorted(p.name for p in state.iterdir())


def test_demo_refuses_an_unknown_model_naming_the_valid_ones(tmp_path: Path) -> None:
    result = run_cli(["demo", "--model", "sora-3"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "sora-3" in result.stderr
    assert "sora-2" in result.stderr


@pytest.mark.parametrize("model", catalog.MODEL_IDS)
def test_demo_arguments_pass_validation_in_every_image_mode(model: str) -> None:
    spec = catalog.get_model(model)
    modes = [m for m in MODE_PREFERENCE if m in spec.modes]
    assert modes, f"{model} offers no mode the demo can drive"
    for mode in modes:
        args = demo_arguments(spec, PROMPT, mode=mode)
        prepared = prepare_request(VideoArguments(**args), input_dirs=())
        assert prepared.spec.id == model
