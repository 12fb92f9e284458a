import pytest

from videolm.data.manifests import ManifestError, read_class_names, read_manifest


def test_jsonl(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text('{"video": "a.mp4", "label": 1, "caption": "x"}\n\n{"video": "b.mp4", "question": "q", "answer": "a"}\n')
    recs = read_manifest(p)
    assert recs == [{"video": "a.mp4", "label": 1, "caption": "x"}, {"video": "b.mp4", "question": "q", "answer": "a"}]


@pytest.mark.parametrize("line,problem", [('{"video": "a.mp4"', "invalid JSON"), ('{"label": 3}', '"video"'), ("[1]", '"video"')])
def test_jsonl_malformed_line_names_file_and_line(tmp_path, line, problem):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"video": "ok.mp4"}\n' + line + "\n")
    with pytest.raises(ManifestError, match=rf"bad.jsonl:2: .*{problem}"):
        read_manifest(p)


def test_csv_tsv_and_kinetics(tmp_path):
    (tmp_path / "m.csv").write_text("video,label,caption\na.mp4,2,hello\nb.mp4,dog,world\n")
    assert read_manifest(tmp_path / "m.csv") == [
        {"video": "a.mp4", "label": 2, "caption": "hello"}, {"video": "b.mp4", "label_name": "dog", "caption": "world"}]
    (tmp_path / "m.tsv").write_text("path\tcaption\nx/y.mp4\ta, b\n")
    assert read_manifest(tmp_path / "m.tsv") == [{"video": "x/y.mp4", "caption": "a, b"}]
    (tmp_path / "k400.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,--07WQ2iBlw,1,11,train\n")
    assert read_manifest(tmp_path / "k400.csv") == [{"video": "--07WQ2iBlw_000001_000011.mp4", "label_name": "abseiling"}]


def test_csv_errors(tmp_path):
    (tmp_path / "a.csv").write_text("file,label\na.mp4,1\n")
    with pytest.raises(ManifestError, match="a.csv:1: header needs"):
        read_manifest(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("video,label\na.mp4,1\nb.mp4\n")
    with pytest.raises(ManifestError, match="b.csv:3: expected 2 columns"):
        read_manifest(tmp_path / "b.csv")


def test_mmaction_list(tmp_path):
    p = tmp_path / "train_list.txt"
    p.write_text("a/b.mp4 3\nc.mp4 1 4\n")
    assert read_manifest(p) == [{"video": "a/b.mp4", "label": 3}, {"video": "c.mp4", "label": [1, 4]}]
    p.write_text("a.mp4 3\nb.mp4 three\n")
    with pytest.raises(ManifestError, match="train_list.txt:2: labels must be integers"):
        read_manifest(p)
    p.write_text("a.mp4\n")
    with pytest.raises(ManifestError, match="train_list.txt:1: expected 'path label'"):
        read_manifest(p)


def test_missing_and_unknown(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "m.xml").write_text("<a/>")
    with pytest.raises(ManifestError, match="unknown manifest format"):
        read_manifest(tmp_path / "m.xml")


def test_class_names(tmp_path):
    (tmp_path / "c.txt").write_text("cat\n\ndog\n")
    assert read_class_names(tmp_path / "c.txt") == ["cat", "dog"]
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(ManifestError, match="e.txt: class list is empty"):
        read_class_names(tmp_path / "e.txt")


@pytest.mark.parametrize("name,text", [
    ("bad.jsonl", b'{"video": "a.mp4"}\n{"video": "caf\xe9.mp4"}\n'),
    ("bad.csv", b'video,label\n\xff.mp4,2\n'),
    ("bad.txt", b'a.mp4 1\nb\xc3.mp4 2\n'),
])
def test_non_utf8_byte_names_file_and_line(tmp_path, name, text):
    (tmp_path / name).write_bytes(text)
    with pytest.raises(ManifestError, match=rf"{name}:2: not UTF-8 text \(byte 0x.. at column"):
        read_manifest(tmp_path / name)


def test_non_utf8_class_list(tmp_path):
    (tmp_path / "classes.txt").write_bytes(b"cat\ndog\n\xff\n")
    with pytest.raises(ManifestError, match="classes.txt:3: not UTF-8"):
        read_class_names(tmp_path / "classes.txt")


@pytest.mark.parametrize("name,text", [("e.jsonl", ""), ("e.jsonl", "\n\n"), ("e.csv", "video,label\n"), ("e.txt", " \n")])
def test_empty_manifest_is_an_error(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError, match=rf"{name}: manifest is empty"):
        read_manifest(tmp_path / name)


def test_line_numbers_travel_with_records(tmp_path):
    (tmp_path / "m.jsonl").write_text('\n{"video": "a.mp4"}\n\n{"video": "b.mp4"}\n')
    recs = read_manifest(tmp_path / "m.jsonl")
    assert recs.lines == [2, 4] and recs.where(1).endswith("m.jsonl:4")
    (tmp_path / "m.csv").write_text('video,caption\na.mp4,"two\nlines"\nb.mp4,x\n')
    assert read_manifest(tmp_path / "m.csv").lines == [3, 4]


def test_time_windows(tmp_path):
    (tmp_path / "w.jsonl").write_text('{"video": "a.mp4", "start": 1.5, "end": 4}\n{"video": "b.mp4", "start": "2"}\n')
    assert read_manifest(tmp_path / "w.jsonl") == [{"video": "a.mp4", "start": 1.5, "end": 4.0},
                                                   {"video": "b.mp4", "start": 2.0}]
    (tmp_path / "w.csv").write_text("video,start,end\na.mp4,1,3\nb.mp4,,\n")
    assert read_manifest(tmp_path / "w.csv") == [{"video": "a.mp4", "start": 1.0, "end": 3.0}, {"video": "b.mp4"}]
    for text, problem in [('{"video": "a.mp4", "start": 3, "end": 2}', "must be after its start"),
                          ('{"video": "a.mp4", "end": "soon"}', "end must be a number"),
                          ('{"video": "a.mp4", "start": -1}', "start must be >= 0")]:
        (tmp_path / "bad.jsonl").write_text('{"video": "ok.mp4"}\n' + text + "\n")
        with pytest.raises(ManifestError, match=f"bad.jsonl:2: .*{problem}"):
            read_manifest(tmp_path / "bad.jsonl")


def test_kinetics_whole_videos_get_the_window(tmp_path):
    p = tmp_path / "k400.csv"
    p.write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,12,22,train\n")
    assert read_manifest(p) == [{"video": "abc_000012_000022.mp4", "label_name": "abseiling"}]
    assert read_manifest(p, kinetics_pattern="full/{youtube_id}.mkv") == [
        {"video": "full/abc.mkv", "label_name": "abseiling", "start": 12.0, "end": 22.0}]
    assert read_manifest(p, kinetics_pattern="{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4") == [
        {"video": "abseiling/abc_000012_000022.mp4", "label_name": "abseiling"}]
    with pytest.raises(ManifestError, match="k400.csv:2: kinetics_pattern"):
        read_manifest(p, kinetics_pattern="{video_id}.mp4")


def test_rawframe_lists(tmp_path):
    p = tmp_path / "train_list_rawframes.txt"
    p.write_text("frames/a 120 3\nframes/b.d 64 1\n")
    assert read_manifest(p) == [{"video": "frames/a", "total_frames": 120, "label": 3},
                                {"video": "frames/b.d", "total_frames": 64, "label": 1}]
    q = tmp_path / "train_list.txt"  # recognised by its first entry: a folder (no suffix), three columns
    q.write_text("frames/a 120 3 5\nframes/b 64 1\n")
    assert read_manifest(q) == [{"video": "frames/a", "total_frames": 120, "label": [3, 5]},
                                {"video": "frames/b", "total_frames": 64, "label": 1}]
    assert read_manifest(q).lines == [1, 2]
    p.write_text("frames/a 120 3\nframes/b many 1\n")
    with pytest.raises(ManifestError, match="rawframes.txt:2: total_frames must be an integer"):
        read_manifest(p)
    p.write_text("frames/a 120 3\nframes/b 64\n")
    with pytest.raises(ManifestError, match="rawframes.txt:2: expected 'frame_dir total_frames label'"):
        read_manifest(p)


def test_json_list(tmp_path):
    (tmp_path / "i.json").write_text('[{"video": "a.mp4", "conversations": []},\n {"video": "b.mp4", "end": 3}]')
    assert read_manifest(tmp_path / "i.json") == [{"video": "a.mp4", "conversations": []}, {"video": "b.mp4", "end": 3.0}]
    (tmp_path / "i.json").write_text('[{"video": "a.mp4"},\n {"path": "b.mp4"}]')
    with pytest.raises(ManifestError, match='i.json: item 1 of the list: expected an object with a "video"'):
        read_manifest(tmp_path / "i.json")
    (tmp_path / "i.json").write_text('[{"video": "a.mp4"},\n {"video": }]')
    with pytest.raises(ManifestError, match="i.json:2: invalid JSON"):
        read_manifest(tmp_path / "i.json")
