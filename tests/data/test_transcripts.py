"""Transcripts (manifest lists, WebVTT, SRT, YT-Temporal JSON) and the TVTS K-window cut."""

import json

import pytest
import torch

from videolm.data.manifests import read_manifest
from videolm.data.transcripts import (
    TooFewWindows,
    TranscriptError,
    cue_words,
    find_transcript,
    load_transcript,
    normalise_cues,
    read_transcript,
    span_indices,
    transcript_windows,
)

# A YouTube auto-caption file as YouTube writes it: BOM, CRLF, header metadata, cue settings, inline
# word times with <c> spans, rolling two-line cues (each repeats the line before) and 10 ms cues that
# repeat the whole previous cue.
YOUTUBE_VTT = (
    "\ufeffWEBVTT\r\nKind: captions\r\nLanguage: en\r\n\r\n"
    "00:00:00.000 --> 00:00:02.310 align:start position:0%\r\n \r\n"
    "hey<00:00:00.400><c> guys</c><00:00:00.800><c> welcome</c>\r\n\r\n"
    "00:00:02.310 --> 00:00:02.320 align:start position:0%\r\nhey guys welcome\r\n \r\n\r\n"
    "00:00:02.320 --> 00:00:05.000 align:start position:0%\r\nhey guys welcome\r\n"
    "to<00:00:02.600><c> my</c><00:00:03.000><c> channel</c>\r\n\r\n"
    "00:00:05.000 --> 00:00:05.010 align:start position:0%\r\nto my channel\r\n \r\n\r\n"
    "00:00:05.010 --> 00:00:08.000 align:start position:0%\r\nto my channel\r\n"
    "today<00:00:05.500><c> we</c><00:00:06.000><c> cook</c>\r\n"
)


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_youtube_vtt_words_once_with_inline_times(tmp_path):
    cues = read_transcript(_write(tmp_path / "yt.vtt", YOUTUBE_VTT))
    words = [w for c in cues for w, _ in cue_words(c)]
    assert words == "hey guys welcome to my channel today we cook".split()
    assert [c["text"] for c in cues] == ["hey guys welcome", "to my channel", "today we cook"]
    times = [t for c in cues for _, t in cue_words(c)]
    assert times == sorted(times)
    # each word sits inside the stretch its inline timestamp opens ("my" at 2.6-3.0 s)
    assert 2.6 <= dict(cue_words(cues[1]))["my"] < 3.0
    assert 0.0 <= dict(cue_words(cues[0]))["hey"] < 0.4
    assert all("<" not in c["text"] and "align" not in c["text"] for c in cues)


def test_vtt_markup_entities_and_voice_stripped(tmp_path):
    text = ("WEBVTT\n\nNOTE a comment\n\nintro\n00:01.000 --> 00:03.000 line:0 position:10%\n"
            "<v Roger>Tom &amp; <i>Jerry</i></v> <b>run</b>\n\n"
            "00:03.000 --> 00:04.000\n<c.yellow>fast</c>\n")
    cues = read_transcript(_write(tmp_path / "a.vtt", text))
    assert [(c["start"], c["end"], c["text"]) for c in cues] == [(1.0, 3.0, "Tom & Jerry run"), (3.0, 4.0, "fast")]


def test_srt_bom_crlf_tags_and_duplicates(tmp_path):
    text = ("\ufeff1\r\n00:00:01,000 --> 00:00:02,000\r\n<i>Hello</i> {\\an8}there\r\n\r\n"
            "2\r\n00:00:01,000 --> 00:00:02,000\r\n<i>Hello</i> there\r\n\r\n"  # exact duplicate cue
            "3\r\n00:00:02,000 --> 00:00:04,000 X1:40 X2:600 Y1:20 Y2:50\r\n<font color=\"red\">general</font>\r\nkenobi\r\n\r\n")
    cues = read_transcript(_write(tmp_path / "a.srt", text))
    assert [(c["start"], c["end"], c["text"]) for c in cues] == [(1.0, 2.0, "Hello there"), (2.0, 4.0, "general kenobi")]
    # no per-word times in SRT: the words share the cue evenly, each in the middle of its share
    assert cue_words(cues[1]) == [("general", 2.5), ("kenobi", 3.5)]


def test_rolling_srt_spreads_new_words_over_the_cue(tmp_path):
    text = ("1\n00:00:00,000 --> 00:00:02,000\nso today we\n\n"
            "2\n00:00:02,000 --> 00:00:04,000\nso today we\nare going home\n\n")
    cues = read_transcript(_write(tmp_path / "roll.srt", text))
    assert [c["text"] for c in cues] == ["so today we", "are going home"]
    assert [round(t, 3) for _, t in cue_words(cues[1])] == [2.333, 3.0, 3.667]


def test_a_repeated_word_inside_a_line_is_kept(tmp_path):
    text = "1\n00:00:00,000 --> 00:00:01,000\nno\n\n2\n00:00:01,000 --> 00:00:02,000\nno way\n\n"
    assert [c["text"] for c in read_transcript(_write(tmp_path / "no.srt", text))] == ["no", "no way"]
    # overlapping in time, one repeated word: still kept
    text = "1\n00:00:00,000 --> 00:00:03,000\nI said no\n\n2\n00:00:02,900 --> 00:00:04,000\nno means no\n\n"
    assert [c["text"] for c in read_transcript(_write(tmp_path / "no2.srt", text))] == ["I said no", "no means no"]


def test_growing_overlapping_cues_give_each_word_once(tmp_path):
    text = ("WEBVTT\n\n00:00.000 --> 00:02.000\nwe are going\n\n"
            "00:01.000 --> 00:03.000\nwe are going to the\n\n00:02.500 --> 00:04.000\nto the market\n")
    cues = read_transcript(_write(tmp_path / "grow.vtt", text))
    assert " ".join(c["text"] for c in cues) == "we are going to the market"


@pytest.mark.parametrize(
    "name, text, line, fragment",
    [
        ("bad.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhi\n\n00:00:03.000 --> 00:00:99.000\nyo\n", 6, "00:00:99.000"),
        ("bad.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhi\n\n00:00:0x.000 --> 00:00:04.000\nyo\n", 6, "invalid cue block"),
        ("bad.vtt", "00:00:01.000 --> 00:00:02.000\nhi\n", 1, "not a WebVTT file"),
        ("bad.vtt", "WEBVTT\n\n00:00:05.000 --> 00:00:04.000\nhi\n", 3, "cue 1"),
        ("bad.srt", "1\n00:00:01,000 --> 00:00:02,000\nhi\n\n2\nno timing here\n", 5, "without a timing line"),
        ("bad.srt", "hello\nworld\n", 1, "not an SRT cue"),
        ("bad.srt", "1\n00:00:01,000 --> 00:00:02,000\nhi\n\n2\n00:00:03,000 --> 00:00:0x,000\nyo\n", 5, "cue 2"),
        ("bad.json", '{"subtitles": [{"word": "hi", "time": 0.5},\n {"word": "yo", "time": "late"}]}', None, "subtitles[1]"),
        ("bad.json", '{"subtitles": [\n{"word": "hi", "time": 0.5},,]}', 2, "invalid JSON"),
        ("bad.json", '{"captions": []}', None, "subtitles"),
    ],
)
def test_malformed_files_name_the_file_and_line_or_cue(tmp_path, name, text, line, fragment):
    path = _write(tmp_path / name, text)
    with pytest.raises(TranscriptError) as err:
        read_transcript(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert fragment in message
    if line is not None:
        assert err.value.line == line, message


def test_srt_block_without_timing_names_its_line(tmp_path):
    path = _write(tmp_path / "junk.srt", "1\n00:00:01,000 --> 00:00:02,000\nhi\n\n\nnot a cue at all\n\n"
                  "2\n00:00:03,000 --> 00:00:04,000\nyo\n")
    with pytest.raises(TranscriptError, match="without a timing line after cue 1") as err:
        read_transcript(path)
    assert err.value.line == 6 and str(err.value).startswith(f"{path}:6:")


def test_yt_temporal_json(tmp_path):
    data = {
        "info": {"duration": 12.0, "title": "x"},
        "subtitles": [{"word": "hey", "time": 0.0}, {"word": "&gt;&gt;", "time": 0.1}, {"word": "guys", "time": 0.149},
                      {"word": "so", "time": 4.2}, {"word": "&amp;", "time": 4.3}, {"word": "cook", "time": 9.5}],
        "denoised": [{"cleanasr": "Hey guys, so cook."}],
    }
    cues = read_transcript(_write(tmp_path / "v.json", json.dumps(data)))
    assert [(w, t) for c in cues for w, t in cue_words(c)] == [("hey", 0.0), ("guys", 0.149), ("so", 4.2), ("cook", 9.5)]
    assert cues[-1]["end"] == 12.0


def test_manifest_list_and_resolution(tmp_path):
    video = tmp_path / "clips" / "a.mp4"
    video.parent.mkdir()
    video.write_bytes(b"")
    listed = {"transcript": [{"start": 1, "end": 2, "text": " b  c "}, {"start": 0, "end": 1, "text": "a"}]}
    assert [c["text"] for c in load_transcript(listed, video)] == ["a", "b c"]
    _write(tmp_path / "subs.srt", "1\n00:00:00,000 --> 00:00:01,000\nnamed\n")
    assert load_transcript({"transcript": "subs.srt"}, video, root=tmp_path)[0]["text"] == "named"
    with pytest.raises(TranscriptError, match="no transcript"):
        load_transcript({}, video)
    _write(video.parent / "a.en.vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\ntagged\n")
    assert find_transcript(video) == video.parent / "a.en.vtt"
    _write(video.parent / "a.srt", "1\n00:00:00,000 --> 00:00:01,000\nbeside\n")
    assert load_transcript({}, video)[0]["text"] == "beside"
    with pytest.raises(TranscriptError, match=r"train.jsonl: a.mp4: transcript\[0\]"):
        load_transcript({"transcript": [{"start": 2, "end": 1, "text": "x"}]}, video, source="train.jsonl")
    with pytest.raises(TranscriptError, match="not found"):
        load_transcript({"transcript": "missing.vtt"}, video)
    with pytest.raises(TranscriptError, match="start, end and text"):
        normalise_cues([{"start": 0, "text": "x"}])


def test_windows_give_back_the_synthetic_texts(corpus):
    for record in read_manifest(corpus / "train.jsonl")[:12]:
        cues = load_transcript(record, corpus / record["video"])
        windows = transcript_windows(cues, k=4, gap=0.0)
        assert windows.texts == [c["text"] for c in record["transcript"]]
        assert windows.span == (0.0, 2.0)
        assert [round(a, 6) for a, _ in windows.bounds] == [0.0, 0.5, 1.0, 1.5]


def test_windows_with_gaps_and_word_times():
    # one word every 0.5 s from 0.25 s to 22.75 s: a 23 s span, four 5 s windows, 1 s gaps
    cues = [{"start": i * 0.5, "end": i * 0.5 + 0.5, "text": f"w{i}"} for i in range(46)]
    w = transcript_windows(cues, k=4, gap=1.0)
    assert w.span == (0.0, 23.0)
    assert w.bounds == [(0.0, 5.0), (6.0, 11.0), (12.0, 17.0), (18.0, 23.0)]
    assert w.texts[0] == " ".join(f"w{i}" for i in range(10))
    assert w.texts[1].split()[0] == "w12" and w.texts[1].split()[-1] == "w21"  # 6.25 .. 10.75 s
    # words in the gaps (5.25, 5.75 s) belong to no window
    assert not any(t in w.texts[i].split() for i in range(4) for t in ("w10", "w11"))


def test_windows_random_sub_span_stays_inside():
    cues = [{"start": float(i), "end": i + 1.0, "text": f"a{i} b{i}"} for i in range(120)]
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(20):
        w = transcript_windows(cues, k=4, gap=1.0, length=(15.0, 23.0), generator=g)
        s, e = w.span
        assert 0.0 <= s and e <= 120.0 and 15.0 <= e - s <= 23.0
        assert w.bounds[0][0] == s and abs(w.bounds[-1][1] - e) < 1e-9
        assert len({b - a for a, b in w.bounds}) <= 2 and abs((w.bounds[1][0] - w.bounds[0][1]) - 1.0) < 1e-9
        starts.add(round(s, 3))
    assert len(starts) > 10


def test_too_few_windows_is_a_skip_signal():
    cues = [{"start": 0.0, "end": 1.0, "text": "early"}, {"start": 19.0, "end": 20.0, "text": "late"}]
    with pytest.raises(TooFewWindows) as err:
        transcript_windows(cues, k=4, gap=1.0, source="clip.mp4")
    assert (err.value.filled, err.value.k) == (2, 4)
    assert str(err.value).startswith("clip.mp4: 2 of 4")
    assert not isinstance(err.value, TranscriptError)
    with pytest.raises(TooFewWindows, match="no room"):
        transcript_windows([{"start": 0.0, "end": 2.0, "text": "a b c d"}], k=4, gap=1.0)
    with pytest.raises(TooFewWindows, match="empty"):
        transcript_windows([], k=4)


def test_span_indices_tsn_inside_the_span():
    idx = span_indices((2.0, 4.0), fps=10, total_frames=100, num_frames=4)
    assert idx.tolist() == [22, 27, 32, 37]
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        t = span_indices((2.0, 4.0), fps=10, total_frames=100, num_frames=4, train=True, generator=g)
        assert all(20 + 5 * i <= v < 25 + 5 * i for i, v in enumerate(t.tolist()))
    assert span_indices((50.0, 60.0), fps=10, total_frames=100, num_frames=2).tolist() == [99, 99]
