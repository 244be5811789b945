"""Settings: sources and their precedence, type checking, and that every one is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from medarchive.settings import load_settings, setting_names

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.database_url == "sqlite:///var/medarchive.db"
    assert settings.public_base() == "http://127.0.0.1:8080"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "medarchive.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nvalidate_writes = false\n')
    env = {"MEDARCHIVE_PORT": "9100"}
    settings = load_settings({"host": "10.0.0.1", "workers": None}, environ=env,
                             config_file=config)
    assert (settings.port, settings.host, settings.validate_writes) == (9100, "10.0.0.1", False)


def test_config_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("max_page_size = 50\n")
    assert load_settings(environ={"MEDARCHIVE_CONFIG": str(config)}).max_page_size == 50


@pytest.mark.parametrize("env", [{"MEDARCHIVE_PORT": "eighty"},
                                 {"MEDARCHIVE_VALIDATE_WRITES": "perhaps"}])
def test_bad_values_are_clear_errors(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="setting"):
        load_settings(environ=env)


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="unknown settings"):
        load_settings(environ={}, config_file=config)
    with pytest.raises(ValueError, match="unknown setting"):
        load_settings({"nope": 1}, environ={})


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name in setting_names() if f"`{name}`" not in text]
    assert not missing, f"settings missing from docs/settings.md: {missing}"
