"""`realscale video` as a user types it."""

from __future__ import annotations

from realscale.cli import main


def test_command_reports_progress_and_result(sample, tiny_model, tmp_path, capsys) -> None:
    out = tmp_path / "part.mp4"
    code = main(["video", str(sample), "-o", str(out), "-m", str(tiny_model), "--start-frame",
                 "10", "--frames", "3", "--preset", "ultrafast", "--progress", "lines"])
    assert code == 0
    err = capsys.readouterr().err
    assert "onepiece_demo.mp4: 3 frames, 640x480 -> 1280x960, H.264" in err
    assert "3/3 frames (100%)" in err and "fps" in err
    assert f"-> {out} (1280x960, 3 frames" in err
    assert out.is_file()


def test_command_errors_say_what_to_do(sample, tmp_path, capsys) -> None:
    code = main(["video", str(sample), "-o", str(tmp_path / "x.mov"), "--crf", "18", "-q"])
    assert code == 2
    assert "--crf is for h264 and h265" in capsys.readouterr().err
    code = main(["video", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.mov"), "-q"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
