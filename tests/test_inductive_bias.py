from dataclasses import replace

import pytest
import torch

from course_utils import experiments
from course_utils.comparisons import COMPARISONS, INDUCTIVE_BIAS_SIZES, Scale
from course_utils.experiments import _load_data, run_comparison, run_variant
from course_utils.results import check_result, difference
from course_utils.train import History

TINY = Scale(steps=3, seeds=(0,), batch_size=8, n_eval=4, n_val=16)


@pytest.fixture(scope="module")
def data():
    return _load_data(COMPARISONS["inductive_bias"], "cpu")


def test_each_variant_trains_on_exactly_the_first_n_latents_of_the_split(data, monkeypatch):
    """A spy in place of train() sees what each variant trains and validates on."""
    seen = {}

    def spy(model, latents, cond, *, config, val, desc):
        seen[desc] = (latents, cond, val)
        history = History()
        history.val_loss.append((config.steps, 1.0))
        return history

    monkeypatch.setattr(experiments, "train", spy)
    monkeypatch.setattr(experiments, "evaluate", lambda model, **kw: {"adherence": 0.5, "frechet": 1.0})
    comparison = COMPARISONS["inductive_bias"]
    ids, mask = data["cond"]
    assert len(data["latents"]) == 50_000
    for variant in comparison.variants:
        run_variant(comparison, variant, 0, TINY, data, "cpu")
        latents, (got_ids, got_mask), val = seen[f"inductive_bias: {variant}, seed 0"]
        n = INDUCTIVE_BIAS_SIZES[variant.split("_")[1]]
        assert len(latents) == n and torch.equal(latents, data["latents"][:n])
        assert torch.equal(got_ids, ids[:n]) and torch.equal(got_mask, mask[:n])
        assert len(torch.unique(latents.flatten(1), dim=0)) == n  # n distinct latents, not n draws of fewer
        assert torch.equal(val[0], data["val"][0][:16])  # the same validation latents for every size


def test_the_unet_and_the_dit_are_matched_in_parameters_and_compute():
    comparison = COMPARISONS["inductive_bias"]
    for size in INDUCTIVE_BIAS_SIZES:
        unet, dit = comparison.variants[f"unet_{size}"](), comparison.variants[f"dit_{size}"]()
        params = [sum(p.numel() for p in m.parameters()) for m in (unet, dit)]
        assert 0.9 <= params[1] / params[0] <= 1.1, params
        assert 0.9 <= dit.forward_gflops() / unet.forward_gflops() <= 1.1
        assert type(unet).__name__ == "UNet" and type(dit).__name__ == "DiT"
    assert comparison.key == ("val_loss", "unet_1k", "dit_1k")


def test_unknown_variants_and_impossible_sizes_are_refused_by_name(data):
    comparison = COMPARISONS["inductive_bias"]
    with pytest.raises(ValueError, match="names 'unet_2k', which is not one of its variants .unet_1k, dit_1k"):
        replace(comparison, train_sizes={"unet_2k": 2_000})
    for n in (60_000, 0, 1.5):
        with pytest.raises(ValueError, match=r"train_sizes\['dit_5k'\].*from 1 to 50,000 \(the 'train' split\)"):
            replace(comparison, train_sizes={"dit_5k": n})
    few = {**data, "latents": data["latents"][:500], "cond": tuple(c[:500] for c in data["cond"])}
    with pytest.raises(ValueError, match="'unet_1k' trains on the first 1,000 latents, but only 500 were given"):
        run_variant(comparison, "unet_1k", 0, TINY, few, "cpu")


def test_a_fast_run_of_two_variants_is_a_valid_result_that_records_the_sizes():
    result = run_comparison("inductive_bias", "fast", variants=["unet_1k", "dit_1k"], device="cpu")
    check_result(result)
    assert result["complete"] and list(result["variants"]) == ["unet_1k", "dit_1k"]
    assert result["budget"]["train_sizes"]["unet_1k"] == 1_000 and result["budget"]["steps"] == 12
    assert set(result["variants"]["dit_1k"]["metrics"]) >= {"val_loss", "adherence_single", "params", "gflops"}
    assert difference(result).n == 2
