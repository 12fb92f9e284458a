import pytest
import torch

from videolm.data.sampling import dense_indices, segment_indices, uniform_indices


@pytest.mark.parametrize("num_frames", [1, 5, 8, 37, 300])
@pytest.mark.parametrize("n", [1, 8, 16])
def test_segment_one_index_per_segment(num_frames, n):
    g = torch.Generator().manual_seed(0)
    for train in (False, True):
        idx = segment_indices(num_frames, n, train=train, generator=g)
        assert idx.shape == (n,) and idx.dtype == torch.long
        assert idx.min() >= 0 and idx.max() < num_frames
        assert torch.all(idx[1:] >= idx[:-1])
        if num_frames >= n:  # each index lies inside its own segment
            edges = torch.arange(n + 1) * num_frames // n
            assert torch.all(idx >= edges[:-1]) and torch.all(idx < edges[1:])


def test_segment_test_mode_is_middle_and_train_is_random():
    assert segment_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    g = torch.Generator().manual_seed(0)
    draws = {tuple(segment_indices(80, 8, train=True, generator=g).tolist()) for _ in range(20)}
    assert len(draws) > 10
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(segment_indices(80, 8, True, g1), segment_indices(80, 8, True, g2))


def test_short_video_repeats_frames():
    idx = segment_indices(3, 8)
    assert set(idx.tolist()) == {0, 1, 2} and len(idx) == 8


def test_uniform_midpoints():
    assert uniform_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert uniform_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_dense_test_clips_are_spread_and_strided():
    idx = dense_indices(100, clip_len=8, frame_interval=4, num_clips=3)
    assert idx.shape == (3, 8)
    assert torch.all(idx[:, 1:] - idx[:, :-1] == 4)
    starts = idx[:, 0]
    assert starts[0] < starts[1] < starts[2] and idx.max() < 100


def test_dense_short_video_loops_or_repeats_last():
    loop = dense_indices(10, clip_len=8, frame_interval=2)
    assert loop.tolist() == [[0, 2, 4, 6, 8, 0, 2, 4]]
    last = dense_indices(10, clip_len=8, frame_interval=2, out_of_bound="repeat_last")
    assert last.tolist() == [[0, 2, 4, 6, 8, 9, 9, 9]]


def test_dense_train_random_start_within_bounds():
    g = torch.Generator().manual_seed(0)
    starts = {int(dense_indices(64, 8, 2, train=True, generator=g)[0, 0]) for _ in range(50)}
    assert len(starts) > 10 and max(starts) <= 64 - 16


def test_bad_arguments():
    with pytest.raises(ValueError, match="0 frames"):
        segment_indices(0, 8)
    with pytest.raises(ValueError, match="num_segments"):
        segment_indices(10, 0)
    with pytest.raises(ValueError, match="out_of_bound"):
        dense_indices(10, 4, out_of_bound="wrap")


# --- sample_indices: by count or by rate, inside a time window -----------------------------------

from videolm.data.sampling import sample_indices, timestamps, window_frames  # noqa: E402
from videolm.io import VideoInfo  # noqa: E402


def info(n, fps):
    return VideoInfo(num_frames=n, fps=fps, width=64, height=64, duration=n / fps)


def test_by_count_matches_the_samplers():
    assert torch.equal(sample_indices(info(80, 25), num_frames=8), segment_indices(80, 8))
    assert torch.equal(sample_indices(info(10, 25), num_frames=5, mode="uniform"), uniform_indices(10, 5))
    dense = sample_indices(info(100, 25), num_frames=8, mode="dense", frame_interval=4, num_clips=3)
    assert torch.equal(dense, dense_indices(100, 8, 4, 3).flatten())


def test_by_rate_one_frame_per_interval():
    idx = sample_indices(info(300, 30), fps=1)  # 10 s at 1 fps: one frame in the middle of each second
    assert idx.tolist() == [15 + 30 * k for k in range(10)]
    assert len(sample_indices(info(300, 30), fps=2)) == 20
    assert len(sample_indices(info(301, 29.97), fps=0.5)) == 5


def test_by_rate_caps():
    assert len(sample_indices(info(300, 30), fps=2, max_frames=16)) == 16
    short = sample_indices(info(12, 30), fps=1, min_frames=4)  # 0.4 s: 1 frame at 1 fps, raised to 4
    assert len(short) == 4 and short.max() < 12
    tiny = sample_indices(info(2, 30), fps=1, min_frames=4)  # fewer frames than min_frames: repeats
    assert len(tiny) == 4 and set(tiny.tolist()) <= {0, 1}


def test_window_keeps_frames_inside():
    v = info(300, 30)
    assert window_frames(v, 2, 5) == (60, 150)
    assert window_frames(v, None, 99) == (0, 300)
    for kw in (dict(num_frames=8), dict(fps=2), dict(num_frames=4, mode="dense", num_clips=2)):
        for train in (False, True):
            idx = sample_indices(v, start=2.0, end=5.0, train=train, **kw)
            assert idx.min() >= 60 and idx.max() < 150, (kw, idx)
    assert len(sample_indices(v, fps=2, start=2.0, end=5.0)) == 6  # the window's 3 s, not the video's 10
    assert (timestamps(sample_indices(v, fps=1, start=2, end=5), 30) - torch.tensor([2.5, 3.5, 4.5])).abs().max() < 1e-6


def test_sample_indices_errors():
    v = info(300, 30)
    with pytest.raises(ValueError, match="takes max_frames"):
        sample_indices(v)
    with pytest.raises(ValueError, match="not both"):
        sample_indices(v, num_frames=8, fps=2)
    # neither: every frame of the window, evenly thinned to max_frames (in order, at random in training)
    assert sample_indices(v, max_frames=400, start=2.0, end=3.0).tolist() == list(range(60, 90))
    assert sample_indices(v, max_frames=10, start=2.0, end=3.0).tolist() == list(range(61, 90, 3))
    drawn = sample_indices(v, max_frames=10, train=True, generator=torch.Generator().manual_seed(0))
    assert len(drawn) == 10 and torch.all(drawn[1:] > drawn[:-1])
    with pytest.raises(ValueError, match="not 'dense'"):
        sample_indices(v, fps=2, mode="dense")
    with pytest.raises(ValueError, match="holds no frame"):
        sample_indices(v, num_frames=8, start=10.0)
    with pytest.raises(ValueError, match="must be after its start"):
        sample_indices(v, num_frames=8, start=3, end=2)
    with pytest.raises(ValueError, match="min_frames"):
        sample_indices(v, fps=2, min_frames=8, max_frames=4)
    with pytest.raises(ValueError, match="fps must be > 0"):
        sample_indices(v, fps=0)
