"""Masks equal the seed lecture's matrices."""
import pytest
import torch

from pixelrt.models.masks import centre_block, channel_groups, conv_mask


def test_rgb_centre_blocks_are_the_seed_matrices():
    # rows: output R, G, B; columns: input R, G, B
    assert centre_block("A", 3).tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert centre_block("B", 3).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_grey_centre_is_blocked_for_a_and_open_for_b():
    assert conv_mask("A", 1, 1, 3, 1)[0, 0].tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert conv_mask("B", 1, 1, 3, 1)[0, 0].tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_spatial_part_of_a_7x7_mask():
    m = conv_mask("B", 3, 3, 7, 3)
    assert m[:, :, :3, :].eq(1).all()        # every row above the centre
    assert m[:, :, 3, :3].eq(1).all()        # left of the centre
    assert m[:, :, 3, 4:].eq(0).all()        # right of the centre
    assert m[:, :, 4:, :].eq(0).all()        # rows below


def test_hidden_channels_split_into_contiguous_groups():
    assert channel_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    m = conv_mask("A", 6, 3, 3, 3)[:, :, 1, 1]  # (out 6, in 3) centre taps
    expected = centre_block("A", 3)[torch.tensor([0, 0, 1, 1, 2, 2])]
    assert torch.equal(m, expected)


def test_bad_mask_arguments_are_refused():
    with pytest.raises(ValueError, match="divisible|equal colour groups"):
        channel_groups(5, 3)
    with pytest.raises(ValueError, match="odd"):
        conv_mask("A", 1, 1, 4, 1)
    with pytest.raises(ValueError, match="'A' or 'B'"):
        centre_block("C", 1)
