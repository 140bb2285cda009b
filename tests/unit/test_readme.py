"""README tells the truth: its settings table is the one the Settings model generates."""

from __future__ import annotations

from pathlib import Path

from streams.settings import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_matches_the_settings_model():
    assert settings_table() in README.read_text(), "regenerate with streams.settings.settings_table()"


def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
