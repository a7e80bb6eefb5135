import hashlib
from pathlib import Path

import pytest

from bench.core.errors import DataError
from bench.data.fetch import SourceFile, fetch, mirror_path


def test_mirror_maps_host_and_path():
    url = "https://raw.githubusercontent.com/o/r/abc/data/Beauty.txt"
    assert mirror_path(url, "/m") == Path("/m/raw.githubusercontent.com/o/r/abc/data/Beauty.txt")
    with pytest.raises(DataError, match="http"):
        mirror_path("ftp:/x", "/m")


def make_mirror(tmp_path, content=b"hello\n"):
    mirror = tmp_path / "mirror"
    target = mirror / "example.org" / "d" / "f.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    return mirror, hashlib.sha256(content).hexdigest()


def test_fetch_copies_from_the_mirror_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    mirror, digest = make_mirror(tmp_path)
    path = fetch(SourceFile("https://example.org/d/f.txt", digest), mirror=mirror)
    assert path.read_bytes() == b"hello\n"
    assert str(path).startswith(str(tmp_path / "cache"))


def test_checksum_mismatch_names_file_hashes_and_origin_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    mirror, digest = make_mirror(tmp_path)
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        fetch(SourceFile("https://example.org/d/f.txt", wrong), mirror=mirror)
    msg = str(err.value)
    assert "f.txt" in msg and wrong in msg and digest in msg and str(mirror) in msg
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []


def test_missing_mirror_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="missing mirror file.*example.org/nope.txt"):
        fetch(SourceFile("https://example.org/nope.txt", "0" * 64), mirror=tmp_path)
