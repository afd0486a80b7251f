"""Tests for mrcnn.augment: hand-checked transforms plus image/mask consistency properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn import augment, utils


def _rect_masks(height, width, boxes):
    masks = np.zeros((height, width, len(boxes)), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    return masks


def _coordinate_image(height, width):
    """float64 [H, W, 2] image whose pixels hold their own (row, col)."""
    rows, cols = np.meshgrid(
        np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij"
    )
    return np.stack([rows, cols], axis=-1)


def test_fliplr_flipud_hand_checked():
    image = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1)
    masks = np.zeros((2, 3, 1), dtype=bool)
    masks[0, 0, 0] = True
    out_image, out_masks = augment.Fliplr(1.0)(image, masks)
    assert out_image[:, :, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert out_masks[:, :, 0].tolist() == [[False, False, True], [False, False, False]]
    out_image, out_masks = augment.Flipud(1.0)(image, masks)
    assert out_image[:, :, 0].tolist() == [[3, 4, 5], [0, 1, 2]]
    assert out_masks[1, 0, 0] and out_masks.sum() == 1
    # p = 0: untouched.
    same_image, same_masks = augment.Fliplr(0.0)(image, masks)
    np.testing.assert_array_equal(same_image, image)
    np.testing.assert_array_equal(same_masks, masks)


def test_fliplr_boxes_mirror():
    masks = _rect_masks(20, 30, [(2, 3, 10, 12), (5, 20, 19, 30)])
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    _, out = augment.Fliplr(1.0)(image, masks)
    boxes = utils.extract_bboxes(out)
    assert boxes.tolist() == [[2, 30 - 12, 10, 30 - 3], [5, 0, 19, 30 - 20]]


def test_rot90_quarter_turn_moves_boxes():
    size = 16
    masks = _rect_masks(size, size, [(1, 2, 5, 9)])
    image = np.zeros((size, size, 3), dtype=np.uint8)
    out_image, out = augment.Rot90(1.0, k=(1,))(image, masks)
    np.testing.assert_array_equal(out, np.rot90(masks, 1, axes=(0, 1)))
    # Counter-clockwise quarter turn: (y1, x1, y2, x2) -> (S - x2, y1, S - x1, y2).
    assert utils.extract_bboxes(out).tolist() == [[size - 9, 1, size - 2, 5]]
    assert out_image.shape == image.shape


def test_rot90_keeps_size_of_non_square_images():
    image = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6)
    masks = np.zeros((4, 6, 2), dtype=bool)
    out_image, _ = augment.Rot90(1.0, k=(1, 3))(image, masks)
    np.testing.assert_array_equal(out_image, image)  # only odd turns allowed -> no rotation
    out_image, _ = augment.Rot90(1.0, k=(1, 2))(image, masks)
    np.testing.assert_array_equal(out_image, image[::-1, ::-1])  # only the half turn fits


def test_brightness_contrast_hand_checked_and_masks_untouched():
    image = np.array([[[10], [250]]], dtype=np.uint8)
    masks = np.ones((1, 2, 1), dtype=bool)
    out, out_masks = augment.BrightnessContrast(brightness=(10, 10), contrast=(1, 1))(image, masks)
    assert out.dtype == np.uint8
    assert out.ravel().tolist() == [20, 255]  # clipped at 255
    out, _ = augment.BrightnessContrast(brightness=(0, 0), contrast=(2, 2))(image, masks)
    # mean 130: (10 - 130) * 2 + 130 = -110 -> 0; (250 - 130) * 2 + 130 = 370 -> 255
    assert out.ravel().tolist() == [0, 255]
    out, _ = augment.BrightnessContrast(brightness=(0, 0), contrast=(0.5, 0.5))(image, masks)
    assert out.ravel().tolist() == [70, 190]
    np.testing.assert_array_equal(out_masks, masks)


def test_scale_crop_fixed_zoom_in_doubles_objects():
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    masks = _rect_masks(40, 40, [(15, 15, 25, 25)])
    out_image, out = augment.ScaleCrop(scale=(2.0, 2.0), rng=0)(image, masks)
    assert out_image.shape == image.shape and out_image.dtype == np.uint8
    y1, x1, y2, x2 = utils.extract_bboxes(out)[0]
    assert (y2 - y1, x2 - x1) == (20, 20)


def test_scale_crop_zoom_out_pads_with_cval():
    image = np.full((40, 40, 3), 200, dtype=np.uint8)
    masks = _rect_masks(40, 40, [(0, 0, 40, 40)])
    out_image, out = augment.ScaleCrop(scale=(0.5, 0.5), cval=7, rng=1)(image, masks)
    assert out.sum() == 20 * 20
    np.testing.assert_array_equal(out_image[out[:, :, 0]], 200)
    np.testing.assert_array_equal(out_image[~out[:, :, 0]], 7)


def test_sometimes_sequential_oneof():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    masks = np.zeros((3, 4, 1), dtype=bool)
    out, _ = augment.Sometimes(0.0, augment.Fliplr(1.0))(image, masks)
    np.testing.assert_array_equal(out, image)
    out, _ = augment.Sometimes(1.0, augment.Fliplr(1.0))(image, masks)
    np.testing.assert_array_equal(out, image[:, ::-1])
    out, _ = augment.Sequential([augment.Fliplr(1.0), augment.Flipud(1.0)])(image, masks)
    np.testing.assert_array_equal(out, image[::-1, ::-1])
    # OneOf applies exactly one: either a left-right or a top-bottom flip, never both or none.
    seen = set()
    one_of = augment.OneOf([augment.Fliplr(1.0), augment.Flipud(1.0)], rng=3)
    for _ in range(30):
        out, _ = one_of(image, masks)
        if np.array_equal(out, image[:, ::-1]):
            seen.add("lr")
        elif np.array_equal(out, image[::-1]):
            seen.add("ud")
        else:
            pytest.fail("OneOf applied neither or both augmenters")
    assert seen == {"lr", "ud"}


def test_sequential_random_order_uses_both_orders():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    masks = np.zeros((4, 4, 1), dtype=bool)
    aug = augment.Sequential([augment.Rot90(1.0, k=(1,)), augment.Fliplr(1.0)], random_order=True, rng=0)
    results = {aug(image, masks)[0].tobytes() for _ in range(30)}
    rot_then_flip = np.rot90(image, 1)[:, ::-1]
    flip_then_rot = np.rot90(image[:, ::-1], 1)
    assert results == {rot_then_flip.tobytes(), flip_then_rot.tobytes()}


def test_plain_callables_inside_containers():
    def invert(image, masks):
        return 255 - image, masks

    image = np.zeros((4, 4, 3), dtype=np.uint8)
    out, out_masks = augment.Sequential([invert, augment.Fliplr(0.0)])(image, np.zeros((4, 4, 2), np.uint8))
    assert out.max() == 255 and out_masks.dtype == bool


def test_same_rng_same_result():
    rng_image = np.random.default_rng(0)
    image = rng_image.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    masks = _rect_masks(32, 32, [(4, 4, 20, 20)])
    aug = augment.Sequential([augment.Fliplr(), augment.ScaleCrop(), augment.BrightnessContrast()])
    first = aug(image, masks, rng=np.random.default_rng(5))
    second = aug(image, masks, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    seeded_a = augment.ScaleCrop(rng=11)(image, masks)
    seeded_b = augment.ScaleCrop(rng=11)(image, masks)
    np.testing.assert_array_equal(seeded_a[0], seeded_b[0])


def test_bad_arguments():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="differ in height/width"):
        augment.Fliplr()(image, np.zeros((8, 9, 1), dtype=bool))
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        augment.Fliplr()(image, np.zeros((8, 8), dtype=bool))
    with pytest.raises(ValueError, match="probability"):
        augment.Fliplr(1.5)
    with pytest.raises(ValueError, match="scale"):
        augment.ScaleCrop(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="scale"):
        augment.ScaleCrop(scale=(0.0, 1.0))
    with pytest.raises(TypeError, match="callables"):
        augment.Sequential([augment.Fliplr(), "flip"])
    with pytest.raises(ValueError, match="at least one"):
        augment.OneOf([])


SPATIAL = [
    lambda: augment.Fliplr(),
    lambda: augment.Flipud(),
    lambda: augment.Rot90(0.8),
    lambda: augment.ScaleCrop((0.6, 1.5), cval=-1),
    lambda: augment.Sequential(
        [augment.Fliplr(), augment.Rot90(), augment.ScaleCrop((0.7, 1.4), cval=-1)], random_order=True
    ),
    lambda: augment.OneOf([augment.Flipud(1.0), augment.ScaleCrop((0.5, 2.0), cval=-1)]),
    lambda: augment.Sometimes(0.5, augment.Rot90(1.0)),
]


@settings(max_examples=60, deadline=None)
@given(
    which=st.integers(0, len(SPATIAL) - 1),
    size=st.tuples(st.integers(8, 40), st.integers(8, 40)),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_masks_follow_the_image(which, size, seed, data):
    """Spatial augmenters move masks exactly like the image: warp an image of pixel coordinates and
    check each output mask pixel against the input mask at the source pixel the image reports."""
    height, width = size
    corners = st.tuples(
        st.integers(0, height - 1), st.integers(0, width - 1), st.integers(1, height), st.integers(1, width)
    )
    boxes = data.draw(
        st.lists(
            corners.map(lambda b: (min(b[0], b[2] - 1), min(b[1], b[3] - 1), b[2], b[3])),
            min_size=1,
            max_size=4,
        )
    )
    masks = _rect_masks(height, width, boxes)
    image = _coordinate_image(height, width)
    out_image, out_masks = SPATIAL[which]()(image, masks, rng=np.random.default_rng(seed))
    assert out_image.shape == image.shape and out_image.dtype == image.dtype
    assert out_masks.shape == masks.shape and out_masks.dtype == bool

    padding = out_image[..., 0] < 0
    assert not out_masks[padding].any()
    # Nearest source pixel of every output pixel (bilinear of a linear ramp is exact; skip pixels whose
    # source position sits on a rounding boundary).
    source = out_image[~padding] + 0.5
    fraction = source - np.floor(source)
    clear = np.all((fraction > 1e-6) & (fraction < 1 - 1e-6), axis=1)
    rows, cols = np.floor(source[clear]).astype(int).T
    expected = masks[rows, cols]
    np.testing.assert_array_equal(out_masks[~padding][clear], expected)
    # Boxes from the masks lie where the image says the instance went.
    for i, (y1, x1, y2, x2) in enumerate(utils.extract_bboxes(out_masks)):
        if out_masks[..., i].any():
            inside = out_image[y1:y2, x1:x2][out_masks[y1:y2, x1:x2, i]]
            assert np.all(inside[:, 0] >= boxes[i][0] - 1) and np.all(inside[:, 0] <= boxes[i][2])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.uint8, np.uint16, np.float32]))
def test_dtype_preserved(seed, dtype):
    rng = np.random.default_rng(seed)
    image = (rng.random((24, 24, 3)) * 200).astype(dtype)
    masks = _rect_masks(24, 24, [(2, 2, 12, 12)])
    aug = augment.Sequential(
        [
            augment.Fliplr(),
            augment.Flipud(),
            augment.Rot90(),
            augment.ScaleCrop(),
            augment.BrightnessContrast(),
        ]
    )
    out_image, out_masks = aug(image, masks, rng=rng)
    assert out_image.dtype == dtype and out_image.shape == image.shape
    assert out_masks.dtype == bool and out_masks.shape == masks.shape
