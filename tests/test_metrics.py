import pytest
import torch
import torch.nn.functional as F

from course_utils.config import SEEDS
from course_utils.data import render_shapes, to_float
from course_utils.judge import ATTRIBUTES, load_judge, read_scenes
from course_utils.metrics import (
    CELL_DISTANCES,
    consistency_by_distance,
    evaluate,
    frechet_distance,
    matches_record,
    pair_consistency,
    prompt_adherence,
    two_object_funnel,
)

TEST = SEEDS["tests"]


@pytest.fixture(scope="module")
def judge():
    return load_judge()


def test_real_images_adhere_to_their_own_captions_and_not_to_others(judge):
    batch = render_shapes(300, seed=TEST + 1)
    assert prompt_adherence(batch.images, batch.records, judge) >= 0.97
    shuffled = batch.records[1:] + batch.records[:1]
    assert prompt_adherence(batch.images, shuffled, judge) < 0.1


def test_pair_consistency_separates_pairs_from_unrelated_objects(judge):
    pairs = render_shapes(200, seed=TEST + 2, mode="pair")
    relations = render_shapes(200, seed=TEST + 2, mode="relation")
    assert pair_consistency(pairs.images, judge) >= 0.97
    assert pair_consistency(relations.images, judge) < 0.1


def test_consistency_by_distance_counts_matching_pairs_at_each_distance(judge):
    twins = consistency_by_distance(read_scenes(judge, render_shapes(300, seed=TEST + 3, size=64, mode="twins").images))
    assert set(twins) == set(CELL_DISTANCES.values()) and all(total > 0 for _, total in twins.values())
    assert sum(good for good, _ in twins.values()) >= 0.97 * 300  # real twins match at every distance
    others = consistency_by_distance(read_scenes(judge, render_shapes(300, seed=TEST + 3, size=64,
                                                                       mode="relation").images))
    assert sum(good for good, _ in others.values()) <= 0.05 * sum(total for _, total in others.values())
    scenes = {"present": torch.zeros(2, 3, 3, dtype=torch.bool), **{k: torch.zeros(2, 3, 3, dtype=torch.long)
                                                                     for k in ATTRIBUTES}}
    scenes["present"][0, 0, 0] = scenes["present"][0, 2, 2] = True  # opposite corners, identical
    scenes["present"][1, 0, 1] = scenes["present"][1, 1, 0] = True  # diagonal neighbours, colours differ
    scenes["colour"][1, 1, 0] = 3
    counts = consistency_by_distance(scenes)
    assert counts["2.8"] == (1, 1) and counts["1.4"] == (0, 1) and counts["1"] == counts["2"] == (0, 0)


def test_frechet_distance_is_small_for_real_sets_and_large_for_blurred_images(judge):
    a = render_shapes(500, seed=TEST + 3).images
    b = render_shapes(500, seed=TEST + 4).images
    blurred = F.interpolate(F.avg_pool2d(to_float(render_shapes(500, seed=TEST + 5).images), 2), scale_factor=2)
    same = frechet_distance(a, b, judge)
    far = frechet_distance(a, blurred, judge)
    assert abs(frechet_distance(a, a, judge)) < 1e-3 * same
    assert far > 5 * same


def test_matches_record_follows_the_caption_grammar():
    single = {"mode": "single", "relation": None,
              "objects": [{"shape": "circle", "colour": "red", "size": "small", "row": 0, "col": 2}]}
    obj = dict(single["objects"][0])
    assert matches_record([obj], single)
    assert not matches_record([{**obj, "col": 1}], single)
    assert not matches_record([obj, {**obj, "row": 2}], single)  # an extra object is not what was asked

    a = {"shape": "circle", "colour": "red", "size": "large", "row": 0, "col": 0}
    b = {"shape": "square", "colour": "blue", "size": "small", "row": 2, "col": 1}
    above = {"mode": "relation", "relation": "above", "objects": [a, b]}
    assert matches_record([b, a], above)  # order of detection does not matter
    assert matches_record([{**a, "size": "small"}, b], above)  # sizes are not in relation captions
    assert not matches_record([{**a, "row": 2}, {**b, "row": 0}], above)

    pair = {"mode": "pair", "relation": None, "objects": [a, {**a, "row": 2, "col": 2}]}
    assert matches_record([a, {**a, "row": 2, "col": 2}], pair)
    assert not matches_record([a, {**a, "colour": "green"}], pair)


def scenes_of(images: list) -> dict:
    """Judge readings written by hand: one list of objects per image."""
    scenes = {"present": torch.zeros(len(images), 3, 3, dtype=torch.bool)}
    scenes.update({name: torch.zeros(len(images), 3, 3, dtype=torch.long) for name in ATTRIBUTES})
    for i, objects in enumerate(images):
        for o in objects:
            scenes["present"][i, o["row"], o["col"]] = True
            for name, values in ATTRIBUTES.items():
                scenes[name][i, o["row"], o["col"]] = values.index(o[name])
    return scenes


def test_two_object_funnel_says_where_two_object_images_go_wrong():
    a = {"shape": "circle", "colour": "red", "size": "large", "row": 0, "col": 0}
    b = {"shape": "square", "colour": "blue", "size": "small", "row": 2, "col": 1}
    record = {"mode": "relation", "relation": "above", "objects": [a, b]}
    readings = [
        [a, b],  # right
        [{**a, "row": 2}, {**b, "row": 0, "col": 2}],  # right objects, relation reversed
        [{**a, "shape": "square"}, {**b, "shape": "circle"}],  # shapes swapped between the objects
        [a, {**b, "shape": "circle"}],  # a shape missing
        [{**a, "colour": "green"}, b],  # a colour missing
        [a],  # one object
    ]
    funnel = two_object_funnel(scenes_of(readings), [record] * len(readings))
    expected = {"two objects": 5, "colours": 4, "shapes": 3, "bound": 2, "relation": 1}
    assert funnel == pytest.approx({k: v / 6 for k, v in expected.items()})
    single = {"mode": "single", "relation": None, "objects": [a]}
    with pytest.raises(ValueError, match="relation-mode records only"):
        two_object_funnel(scenes_of([[a]]), [single])


def test_adherence_needs_one_record_per_image(judge):
    batch = render_shapes(4, seed=TEST + 6)
    with pytest.raises(ValueError, match="one scene record per image: 4 images, got 3 records"):
        prompt_adherence(batch.images, batch.records[:3], judge)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"n": 0}, r"n must be a positive integer number of images, got 0"),
    ({"n": 2.5}, r"n must be a positive integer .* got 2.5"),
    ({"n": True}, r"n must be a positive integer .* got True"),
    ({"mode": "mixed"}, r"mode must be one of \('single', 'relation', 'pair', 'twins'\), got 'mixed'"),
    ({"mode": "relations"}, r"mode must be one of .*'relation'.*got 'relations'"),
    ({"size": 40}, r"size must be a positive multiple of 16 .* got 40"),
    ({"size": "32"}, r"size must be a positive multiple of 16 .* got '32'"),
])
def test_evaluate_checks_n_mode_and_size_before_any_work(kwargs, pattern):
    def model(*args):
        raise AssertionError("evaluate sampled before checking its arguments")

    with pytest.raises(ValueError, match=pattern):
        evaluate(model, judge="never read", **kwargs)


def test_frequency_errors_split_the_error_into_block_means_and_the_rest():
    from course_utils.metrics import frequency_errors

    class Exact(torch.nn.Module):  # predicts v = x1 - x0 exactly for known (x0, x1): no error at all
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t, cond):
            return self.v

    latents = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = (torch.zeros(6, 12, dtype=torch.long), torch.ones(6, 12, dtype=torch.bool))
    exact = Exact()
    x0 = torch.randn(latents.shape, generator=torch.Generator().manual_seed(3))
    exact.v = latents - x0
    errors = frequency_errors(exact, latents, cond, seed=3)
    assert errors["low_freq_error"] < 1e-10 and errors["high_freq_error"] < 1e-10
    # an error constant on every 2x2 block is all low frequency; a checkerboard is all high frequency
    block = torch.ones(6, 4, 4, 4).repeat_interleave(2, -1).repeat_interleave(2, -2)
    checker = (torch.arange(8)[:, None] + torch.arange(8)) % 2 * 2.0 - 1
    for error, low, high in ((block, 1.0, 0.0), (checker.expand(6, 4, 8, 8), 0.0, 1.0)):
        exact.v = latents - x0 + error / 0.3  # at t = 0.7 the estimate x_t + 0.3 v is off by exactly `error`
        errors = frequency_errors(exact, latents, cond, seed=3)
        assert abs(errors["low_freq_error"] - low) < 1e-5 and abs(errors["high_freq_error"] - high) < 1e-5
    with pytest.raises(ValueError, match="even H and W"):
        frequency_errors(exact, torch.randn(2, 4, 7, 7), cond)
    with pytest.raises(ValueError, match="t must lie in"):
        frequency_errors(exact, latents, cond, t=1.0)
