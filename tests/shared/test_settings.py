from __future__ import annotations

import os
from pathlib import Path

import pytest

from gravitex_mcp.errors import ConfigurationError, MissingAPIKeyError
from gravitex_mcp.settings import load_settings


def test_defaults_from_home(tmp_path: Path) -> None:
    s = load_settings({"HOME": str(tmp_path)})
    assert s.output_dir == (tmp_path / "gravitex-videos").resolve()
    assert s.state_dir == (tmp_path / ".local/state/gravitex-mcp").resolve()
    assert s.base_url == "https://api.gravitex.ai"
    assert not s.simulate
    assert s.api_key is None


def test_flags_win_over_env(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "GRAVITEX_OUTPUT_DIR": str(tmp_path / "env-out"),
        "GRAVITEX_SIMULATE": "0",
        "GRAVITEX_BASE_URL": "https://example.test/",
    }
    s = load_settings(env, simulate=True, output_dir=tmp_path / "flag-out")
    assert s.simulate
    assert s.output_dir == (tmp_path / "flag-out").resolve()
    assert s.base_url == "https://example.test"


def test_input_dirs_split_on_pathsep(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    s = load_settings({"HOME": str(tmp_path), "GRAVITEX_INPUT_DIRS": f"{a}{os.pathsep}{b}"})
    assert s.input_dirs == (a.resolve(), b.resolve())


def test_missing_key_names_the_fix(tmp_path: Path) -> None:
    s = load_settings({"HOME": str(tmp_path)})
    with pytest.raises(MissingAPIKeyError, match="GRAVITEX_API_KEY") as info:
        s.require_api_key()
    assert "--simulate" in str(info.value)
    assert isinstance(info.value, ConfigurationError)


def test_key_is_not_in_repr(tmp_path: Path) -> None:
    s = load_settings({"HOME": str(tmp_path), "GRAVITEX_API_KEY": "sk-secret-123"})
    assert s.require_api_key() == "sk-secret-123"
    assert "sk-secret-123" not in repr(s)


def test_bad_log_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="GRAVITEX_LOG_LEVEL"):
        load_settings({"HOME": str(tmp_path), "GRAVITEX_LOG_LEVEL": "chatty"})
