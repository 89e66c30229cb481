import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError

from tokbench.data.params import ShapesParams
from tokbench.data.shapes import CLASSNAMES, GENERATOR_VERSION, ShapesDataset, render, sample_spec, shape_mask


def test_same_seed_and_index_give_identical_bytes():
    a = ShapesDataset(seed=3, num_images=20)
    b = ShapesDataset(seed=3, num_images=20)
    for i in (0, 7, 19):
        assert a.image(i).tobytes() == b.image(i).tobytes()
        assert a.caption(i) == b.caption(i)


def test_sample_does_not_depend_on_dataset_size_or_access_order():
    small = ShapesDataset(num_images=10)
    large = ShapesDataset(num_images=1000)
    late = large.image(999)
    assert np.array_equal(small.image(5), large.image(5))
    assert np.array_equal(late, ShapesDataset(num_images=1000).image(999))


def test_different_seed_gives_different_images():
    a, b = ShapesDataset(seed=0, num_images=8), ShapesDataset(seed=1, num_images=8)
    assert all(not np.array_equal(a.image(i), b.image(i)) for i in range(8))


def test_train_and_val_differ():
    train, val = ShapesDataset(split="train", num_images=8), ShapesDataset(split="val", num_images=8)
    assert all(not np.array_equal(train.image(i), val.image(i)) for i in range(8))


def test_at_least_ten_prompt_friendly_classes():
    ds = ShapesDataset()
    assert ds.num_classes >= 10
    assert ds.classnames == list(CLASSNAMES)
    assert len(set(ds.classnames)) == ds.num_classes
    assert all(name.isalpha() and name.islower() for name in ds.classnames)


def test_labels_are_balanced():
    ds = ShapesDataset(num_images=10 * len(CLASSNAMES) + 3)
    counts = np.bincount(ds.labels(), minlength=ds.num_classes)
    assert counts.max() - counts.min() <= 1
    assert [ds.label(i) for i in range(len(ds))] == ds.labels().tolist()


def test_captions_name_the_class_and_colours():
    ds = ShapesDataset(num_images=48)
    for i in range(len(ds)):
        caption, spec = ds.caption(i), ds.spec(i)
        assert ds.classnames[ds.label(i)] in caption
        assert spec.colour in caption and spec.background_colour in caption
        assert spec.colour != spec.background_colour
        assert caption.startswith(("a ", "an "))


@pytest.mark.parametrize("resolution", [8, 17, 32, 64, 256])
def test_any_resolution_gives_uint8_rgb(resolution):
    ds = ShapesDataset(resolution=resolution, num_images=3)
    image = ds.image(2)
    assert image.shape == (resolution, resolution, 3)
    assert image.dtype == np.uint8


def test_same_picture_across_resolutions():
    small = ShapesDataset(resolution=32, num_images=4).image(3).astype(np.float32)
    large = ShapesDataset(resolution=128, num_images=4).image(3).astype(np.float32)
    downsampled = large.reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
    assert np.abs(downsampled - small).mean() < 6


def test_index_out_of_range():
    ds = ShapesDataset(num_images=4)
    with pytest.raises(IndexError):
        ds.image(4)
    with pytest.raises(IndexError):
        ds.label(-1)


def test_fingerprint_is_stable_and_tracks_params():
    base = ShapesDataset(num_images=16)
    assert base.fingerprint() == ShapesDataset(num_images=16).fingerprint()
    others = [
        ShapesDataset(num_images=17),
        ShapesDataset(num_images=16, seed=1),
        ShapesDataset(num_images=16, split="train"),
        ShapesDataset(num_images=16, resolution=32),
    ]
    assert len({base.fingerprint(), *(o.fingerprint() for o in others)}) == 5
    described = base.describe()
    assert described["generator_version"] == GENERATOR_VERSION
    assert described["classnames"] == base.classnames


def test_from_params_matches_keyword_constructor():
    params = ShapesParams(split="train", num_images=5, resolution=24, seed=9)
    a, b = ShapesDataset.from_params(params), ShapesDataset(split="train", num_images=5, resolution=24, seed=9)
    assert a.fingerprint() == b.fingerprint()
    assert np.array_equal(a.image(4), b.image(4))


@pytest.mark.parametrize(
    "bad", [{"split": "test"}, {"num_images": 0}, {"resolution": 4}, {"seed": -1}, {"colour": "red"}]
)
def test_bad_params_fail_validation(bad):
    with pytest.raises(ValidationError):
        ShapesParams(**bad)


def test_classes_differ_in_identical_pose():
    spec = sample_spec(0, "val", 0)
    spec = dataclasses.replace(spec, center=(0.5, 0.5), radius=0.3, rotation=0.3, background="plain", noise_std=0)
    images = [render(dataclasses.replace(spec, shape=name), 64).astype(np.float32) for name in CLASSNAMES]
    for a in range(len(images)):
        for b in range(a + 1, len(images)):
            assert np.abs(images[a] - images[b]).mean() > 1.0, (CLASSNAMES[a], CLASSNAMES[b])


def test_shapes_are_visible_and_inside_the_frame():
    ds = ShapesDataset(num_images=120)
    for i in range(len(ds)):
        coverage = shape_mask(ds.spec(i), 48)
        assert 0.02 < coverage.mean() < 0.5
        assert coverage.max() == 1.0
        border = np.concatenate([coverage[0], coverage[-1], coverage[:, 0], coverage[:, -1]])
        assert border.mean() < 0.1


def test_images_are_antialiased():
    spec = dataclasses.replace(sample_spec(0, "val", 0), background="plain", noise_std=0, rotation=0.4)
    coverage = shape_mask(spec, 64)
    partial = (coverage > 0.05) & (coverage < 0.95)
    assert partial.any()
    assert not np.isin(render(spec, 64)[..., 0], [spec.rgb[0], spec.background_rgb[0]]).all()




def test_nearest_centroid_on_masks_beats_chance():
    # Shape identity must be recoverable from pixels: centroid classifier on
    # centred coverage maps (colour and position removed) well above chance.
    def features(spec):
        centred = dataclasses.replace(spec, center=(0.5, 0.5), radius=0.3)
        return shape_mask(centred, 24).ravel()

    train = [sample_spec(0, "train", i) for i in range(240)]
    test = [sample_spec(0, "val", i) for i in range(120)]
    centroids = np.stack([np.mean([features(s) for s in train if s.label == c], axis=0) for c in range(len(CLASSNAMES))])
    predictions = [np.argmin(((centroids - features(s)) ** 2).sum(1)) for s in test]
    accuracy = np.mean([p == s.label for p, s in zip(predictions, test)])
    assert accuracy > 0.5  # chance is 1/12; measured 0.8


def test_colour_labels_name_the_shapes_colour():
    from tokbench.data.shapes import COLOUR_TEMPLATES, COLOURS, ZERO_SHOT_TEMPLATES

    by_shape = ShapesDataset(num_images=40, resolution=16)
    by_colour = ShapesDataset(num_images=40, resolution=16, labels="colour")
    assert by_colour.classnames == list(COLOURS) and by_shape.classnames == list(CLASSNAMES)
    for i in range(40):
        assert by_colour.classnames[by_colour.label(i)] == by_shape.spec(i).colour
        assert np.array_equal(by_colour.image(i), by_shape.image(i))
    np.testing.assert_array_equal(by_colour.labels(), [by_colour.label(i) for i in range(40)])
    assert by_colour.fingerprint() != by_shape.fingerprint()
    assert by_colour.zero_shot_templates() == COLOUR_TEMPLATES and by_shape.zero_shot_templates() == ZERO_SHOT_TEMPLATES
    assert COLOUR_TEMPLATES[0].format("red") == "a red circle"


def test_views_rerender_at_the_protocol_resolution():
    data = ShapesDataset(num_images=4, resolution=32)
    assert data.view("adm", 32) is data
    bigger = data.view("squash-bilinear", 48)
    assert bigger.resolution == 48 and np.array_equal(bigger.image(1), ShapesDataset(num_images=4, resolution=48).image(1))
    cropped = data.view("center-0.875", 28)  # a 32 px render, centre 28 px
    assert np.array_equal(cropped.image(2), data.image(2)[2:30, 2:30])
    assert cropped.fingerprint() != data.fingerprint() and cropped.labels().tolist() == data.labels().tolist()
