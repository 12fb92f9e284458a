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
