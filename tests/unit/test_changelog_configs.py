"""Warnings about existing changelog topics (created by an older version or by hand):
each names the topic, what is wrong and the command that fixes it."""

from __future__ import annotations

from streams.runtime.kafka import changelog_config_warnings, changelog_configs
from streams.settings import Settings


def test_changelogs_as_created_give_no_warning_and_older_ones_one_each():
    settings = Settings(app_id="app")
    assert changelog_config_warnings(settings, {"app.stage1-changelog": changelog_configs(settings)}) == []
    lines = changelog_config_warnings(settings, {
        "app.stage1-changelog": {"cleanup.policy": "compact", "segment.bytes": "1073741824"},
        "app.stage2-changelog": {"cleanup.policy": "delete", "segment.bytes": "1048576"},
    })
    assert len(lines) == 2
    assert lines[0].startswith("changelog topic app.stage1-changelog has segment.bytes=1073741824")
    assert lines[0].endswith("--entity-name app.stage1-changelog --add-config segment.bytes=67108864")
    assert lines[1].startswith("changelog topic app.stage2-changelog is not compacted (cleanup.policy=delete)")
    assert lines[1].endswith("--add-config cleanup.policy=compact")
    # compact,delete still compacts; smaller segments than ours are fine
    assert changelog_config_warnings(settings, {
        "app.stage1-changelog": {"cleanup.policy": "compact,delete", "segment.bytes": "1048576"}}) == []
