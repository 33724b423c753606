import pytest
import torch

from course_utils.config import SEEDS
from course_utils.data import render_shapes, to_float
from course_utils.judge import Judge, attribute_accuracy, judge_loss, load_judge, read_scenes, scene_objects

TEST = SEEDS["tests"]


@pytest.fixture(scope="module")
def judge():
    return load_judge()


@pytest.mark.parametrize("size", [32, 64])
def test_judge_reads_every_attribute_of_fresh_images(judge, size):
    acc = attribute_accuracy(judge, n=400, size=size, seed=TEST + 10)
    assert min(acc.values()) >= 0.98, acc


def test_read_scenes_accepts_uint8_and_float_and_rejects_bad_shapes(judge):
    images = render_shapes(8, seed=TEST + 11).images
    a, b = read_scenes(judge, images), read_scenes(judge, to_float(images))
    assert all(torch.equal(a[k], b[k]) for k in a) and a["present"].shape == (8, 3, 3)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        read_scenes(judge, torch.zeros(2, 4, 8, 8))


def test_scene_objects_read_back_what_was_drawn(judge):
    batch = render_shapes(20, seed=TEST + 12, mode="relation")
    scenes = read_scenes(judge, batch.images)
    for i, record in enumerate(batch.records):
        read = sorted((o["row"], o["col"], o["shape"], o["colour"]) for o in scene_objects(scenes, i))
        drawn = sorted((o["row"], o["col"], o["shape"], o["colour"]) for o in record["objects"])
        assert read == drawn, (i, read, drawn)


def test_training_steps_lower_the_judge_loss_on_their_batch():
    torch.manual_seed(0)
    judge = Judge(width=8)
    batch = render_shapes(16, seed=TEST + 13)
    images = to_float(batch.images)
    opt = torch.optim.Adam(judge.parameters(), lr=1e-2)
    before = judge_loss(judge, images, batch.records).item()
    for _ in range(40):
        opt.zero_grad()
        judge_loss(judge, images, batch.records).backward()
        opt.step()
    assert judge_loss(judge, images, batch.records).item() < 0.75 * before


def test_the_shipped_judge_rebuilds_from_its_config():
    judge = load_judge()
    assert isinstance(judge, Judge) and judge.config == {"width": 48} and not judge.training
    assert Judge.from_config(judge.config).state_dict().keys() == judge.state_dict().keys()


def test_the_judge_refuses_images_outside_their_range(judge):
    images = render_shapes(2, seed=TEST + 14).images
    with pytest.raises(ValueError, match=r"images must be floats in \[-1, 1\]"):
        read_scenes(judge, images.float())
    nan = to_float(images)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="from nan"):
        read_scenes(judge, nan)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"n": 0}, r"n must be a positive integer number of images, got 0"),
    ({"n": -5}, r"n must be a positive integer .* got -5"),
    ({"n": 10.0}, r"n must be a positive integer .* got 10.0"),
    ({"size": 30}, r"size must be a positive multiple of 16 .* got 30"),
    ({"size": 0}, r"size must be a positive multiple of 16 .* got 0"),
])
def test_attribute_accuracy_checks_n_and_size(judge, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        attribute_accuracy(judge, **kwargs)
