"""The sampling_steps experiment: its settings spend the stated function evaluations, and it refuses what it lacks."""

import pytest

from course_utils.checkpoint import load_model
from course_utils.solvers import NFES, SETTINGS, run_sampling_steps


def test_settings_pair_euler_and_heun_at_equal_function_evaluations():
    euler = {n for s, (name, n) in SETTINGS.items() if name == "euler"}
    heun = {2 * n for s, (name, n) in SETTINGS.items() if name == "heun"}  # Heun calls the model twice a step
    assert euler == set(NFES) and heun == set(NFES) - {1}


def test_each_setting_calls_the_model_as_often_as_its_nfe_says():
    model, calls = load_model("unet"), []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    result = run_sampling_steps("fast", settings=["euler_2", "heun_4"], model=model)
    nfe = {name: entry["metrics"]["nfe"] for name, entry in result["variants"].items()}
    assert nfe == {"euler_2": [2], "heun_4": [4]}
    # 16 prompts; with CFG each function evaluation is a conditional and an unconditional call
    assert calls == [16] * (2 * 2 + 2 * 4)
    assert all(0 <= v["metrics"]["adherence_single"][0] <= 1 for v in result["variants"].values())


def test_unknown_settings_and_scales_are_named():
    with pytest.raises(ValueError, match="the settings are euler_1, euler_2"):
        run_sampling_steps("fast", settings=["euler_3"])
    with pytest.raises(ValueError, match="scale must be one of"):
        run_sampling_steps("huge")
