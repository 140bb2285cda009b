"""bench.profile_summary: shares of py-spy samples per function."""

from __future__ import annotations

from bench.profile_summary import frame_name, main, summarise

FOLDED = [
    "<module> (/r/streams/cli.py:10);run (/r/streams/runtime/stage1.py:380);step (/r/streams/runtime/stage1.py:190) 6",
    "<module> (/r/streams/cli.py:10);run (/r/streams/runtime/stage1.py:380);flush (/r/streams/runtime/stage1.py:260) 3",
    # recursion: a function twice on one stack counts once, inclusively
    "<module> (/r/streams/cli.py:10);f (/v/lib/python3.11/json/x.py:1);f (/v/lib/python3.11/json/x.py:2) 1",
]


def test_frames_lose_line_numbers_and_path_prefixes():
    assert frame_name("step (/r/streams/runtime/stage1.py:190)") == "step (streams/runtime/stage1.py)"
    assert frame_name("loads (/v/lib/python3.11/site-packages/orjson/x.py:3)") == "loads (site-packages/orjson/x.py)"
    assert frame_name("<idle>") == "<idle>"


def test_inclusive_and_self_shares():
    total, inclusive, own = summarise(FOLDED)
    assert total == 10
    assert inclusive["<module> (streams/cli.py)"] == 10
    assert inclusive["run (streams/runtime/stage1.py)"] == 9
    assert inclusive["f (lib/python3.11/json/x.py)"] == 1
    assert own == {"step (streams/runtime/stage1.py)": 6, "flush (streams/runtime/stage1.py)": 3,
                   "f (lib/python3.11/json/x.py)": 1}


def test_cli_reports_percentages_and_refuses_a_missing_file(tmp_path, capsys):
    path = tmp_path / "p.folded"
    path.write_text("\n".join(FOLDED) + "\n")
    assert main([str(path), "--match", "stage1"]) == 0
    out = capsys.readouterr().out
    assert "10 samples" in out and " 90.0 %  run (streams/runtime/stage1.py)" in out and "cli.py" not in out
    assert main([str(tmp_path / "missing")]) == 2
