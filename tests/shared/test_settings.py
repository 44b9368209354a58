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


# --- GRAVITEX_STORAGE_URL ----------------------------------------------------------------

_S3_ENV = {
    "AWS_ENDPOINT_URL": "https://s3.example.com",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
    "AWS_REGION": "eu-west-1",
}


def test_no_storage_url_means_the_output_folder() -> None:
    assert load_settings({}).storage is None


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://videos", "videos", ""),
        ("s3://videos/", "videos", ""),
        ("s3://videos/team", "videos", "team/"),
        ("s3://videos//team/a/", "videos", "team/a/"),
    ],
)
def test_the_storage_url_names_a_bucket_and_a_prefix(url: str, bucket: str, prefix: str) -> None:
    storage = load_settings({"GRAVITEX_STORAGE_URL": url, **_S3_ENV}).storage
    assert storage is not None
    assert (storage.bucket, storage.prefix) == (bucket, prefix)
    assert storage.endpoint == "https://s3.example.com"
    assert storage.region == "eu-west-1"
    assert storage.access_key_id == "AKIDEXAMPLE"
    assert storage.media_ttl_seconds == 3600
    assert storage.allow_http is False
    assert "wJalrXUtnFEMI" not in repr(storage)


@pytest.mark.parametrize(
    "url", ["videos", "s3://", "https://videos", "s3://videos/../x", "s3://videos/.hidden"]
)
def test_a_bad_storage_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="GRAVITEX_STORAGE_URL"):
        load_settings({"GRAVITEX_STORAGE_URL": url})


def test_plain_http_storage_only_on_loopback_or_when_allowed() -> None:
    env = {"GRAVITEX_STORAGE_URL": "s3://v", "AWS_ENDPOINT_URL": "http://s3.example.com"}
    with pytest.raises(ConfigurationError, match="AWS_ALLOW_HTTP"):
        load_settings(env)
    allowed = load_settings({**env, "AWS_ALLOW_HTTP": "1"}).storage
    assert allowed is not None
    assert allowed.allow_http
    loopback = load_settings({**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:8333"}).storage
    assert loopback is not None
    assert loopback.allow_http


@pytest.mark.parametrize("ttl", ["0", "59", "604801", "1h", "-5"])
def test_the_media_ttl_is_bounded(ttl: str) -> None:
    with pytest.raises(ConfigurationError, match="GRAVITEX_MEDIA_TTL_SECONDS"):
        load_settings({"GRAVITEX_STORAGE_URL": "s3://v", "GRAVITEX_MEDIA_TTL_SECONDS": ttl})


def test_the_media_ttl_is_read() -> None:
    env = {"GRAVITEX_STORAGE_URL": "s3://v", "GRAVITEX_MEDIA_TTL_SECONDS": "900"}
    storage = load_settings(env).storage
    assert storage is not None
    assert storage.media_ttl_seconds == 900


def test_create_only_copies_follow_aws_copy_if_not_exists() -> None:
    base = {"GRAVITEX_STORAGE_URL": "s3://v"}
    default = load_settings(base).storage
    assert default is not None
    assert default.copy_if_not_exists == "multipart"  # Amazon S3's own way
    seaweed = load_settings({**base, "AWS_COPY_IF_NOT_EXISTS": "header:If-None-Match:*"}).storage
    assert seaweed is not None
    assert seaweed.copy_if_not_exists == "header:If-None-Match:*"
    with pytest.raises(ConfigurationError, match="AWS_COPY_IF_NOT_EXISTS"):
        load_settings({**base, "AWS_COPY_IF_NOT_EXISTS": "yes please"})
