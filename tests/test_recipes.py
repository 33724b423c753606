import pytest
import torch

from course_utils.dit import DiT
from course_utils.metrics import evaluate, two_object_funnel
from course_utils.mmdit import MMDiT
from course_utils.data import MODES
from course_utils.recipes import load_lesson_model, mode_sample_weights
from course_utils.unet import UNet


@pytest.mark.parametrize("name,cls", [("unet", UNet), ("dit", DiT), ("mmdit", MMDiT)])
def test_shipped_lesson_models_load_and_follow_the_contract(name, cls):
    model = load_lesson_model(name)
    assert isinstance(model, cls) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x = torch.randn(2, 4, 8, 8)
    ids, mask = model.null_condition()
    assert model(x, torch.rand(2), (ids.expand(2, -1), mask.expand(2, -1))).shape == x.shape


@pytest.mark.parametrize("name,least", [("unet", 0.85), ("dit", 0.8), ("mmdit", 0.9)])
def test_shipped_lesson_models_follow_single_object_captions(name, least):
    result = evaluate(load_lesson_model(name), n=100, cfg_scale=2.0, seed=7)
    assert result["adherence"] > least, result["adherence"]


def test_shipped_mmdit_draws_two_objects_in_their_colours():
    result = evaluate(load_lesson_model("mmdit"), n=100, mode="relation", cfg_scale=2.0, seed=7)
    funnel = two_object_funnel(result["scenes"], result["records"])
    assert funnel["colours"] > 0.7 and result["adherence"] > 0.05, funnel


def test_unknown_lesson_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown lesson model 'gan'"):
        load_lesson_model("gan")


def test_mode_weights_give_each_sample_its_scene_modes_weight():
    scenes = torch.tensor([[MODES.index(m), -1] for m in ("single", "relation", "pair", "relation")])
    assert mode_sample_weights(scenes, {"relation": 2.5}).tolist() == [1.0, 2.5, 1.0, 2.5]
    with pytest.raises(ValueError, match="unknown scene mode"):
        mode_sample_weights(scenes, {"relations": 2.0})
