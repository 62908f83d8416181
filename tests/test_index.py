"""The clip index: probe once, cache beside the data, invalidate on change, skip bad files on request."""

from __future__ import annotations

import json
import os

import pytest
from media import make_video

from avlib import io
from avlib.data.index import CACHE_NAME, build_index


def test_index_caches_and_invalidates(tmp_path):
    make_video(tmp_path / "a.mp4", num_frames=50, fps=25.0)
    make_video(tmp_path / "sub" / "b.avi", num_frames=75, fps=25.0, channels=None)
    first = build_index(tmp_path)
    assert first.probed == 2 and len(first) == 2
    assert (tmp_path / CACHE_NAME).exists()
    by_name = {os.path.basename(video.path): video for video in first.videos}
    assert by_name["a.mp4"].has_audio and not by_name["b.avi"].has_audio
    assert abs(by_name["b.avi"].duration - 3.0) < 0.05

    again = build_index(tmp_path)
    assert again.probed == 0 and [v.duration for v in again.videos] == [v.duration for v in first.videos]

    make_video(tmp_path / "a.mp4", num_frames=100, fps=25.0)  # changed file -> re-probed
    (tmp_path / "sub" / "b.avi").unlink()  # removed file -> dropped
    changed = build_index(tmp_path)
    assert changed.probed == 1 and len(changed) == 1 and abs(changed[0].duration - 4.0) < 0.05
    assert list(json.loads((tmp_path / CACHE_NAME).read_text())["files"]) == ["a.mp4"]


def test_bad_files_stop_or_are_skipped_and_listed(tmp_path, caplog):
    make_video(tmp_path / "good.mp4", num_frames=50, fps=25.0)
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    with pytest.raises(io.CorruptFileError, match="broken.mp4"):
        build_index(tmp_path)
    index = build_index(tmp_path, skip_bad=True)
    assert len(index) == 1 and [name for name, _ in index.bad] == ["broken.mp4"]
    assert "broken.mp4" in caplog.text and "skipped 1" in caplog.text


def test_list_file_with_missing_entry(tmp_path):
    make_video(tmp_path / "clips" / "one.mp4", num_frames=50, fps=25.0)
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\nclips/one.mp4\nclips/gone.mp4\n")
    with pytest.raises(io.MissingFileError, match="gone.mp4"):
        build_index(listing)
    index = build_index(listing, skip_bad=True)
    assert len(index) == 1 and index.bad[0][0] == os.path.join("clips", "gone.mp4")
