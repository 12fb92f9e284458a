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
