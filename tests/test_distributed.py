"""Data-parallel retraining under torchrun: two CPU processes (gloo) train the MMDiT for a few steps in lockstep.

The test launches `python -m torch.distributed.run --standalone --nproc-per-node 2` on this file, which then runs as
the worker: it records what each rank saw at every step (the weights, its batch, the generator state its noise and
times are drawn from, the gradient DDP handed to clipping), then runs the real command, course_utils.retrain.main.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.utils import parameters_to_vector, vector_to_parameters

STEPS, BATCH = 3, 8  # BATCH: both processes together, 4 each


def _flat_grads(params) -> torch.Tensor:
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in params])


def _worker(records: Path, argv: list) -> None:
    """One rank: record each step's weights, inputs and gradient, then run the command."""
    import course_utils.retrain as retrain_mod
    import course_utils.train as train_mod

    seen, model = [], []
    real_loss, real_train, real_clip = train_mod.flow_matching_loss, retrain_mod.train, torch.nn.utils.clip_grad_norm_

    def recording_train(net, *args, **kwargs):
        model.append(net)
        return real_train(net, *args, **kwargs)

    def recording_loss(forward, x1, cond, generator, schedule):
        if not torch.is_grad_enabled():  # rank 0's validation
            return real_loss(forward, x1, cond, generator=generator, schedule=schedule)
        seen.append({"weights": parameters_to_vector(model[0].parameters()).detach().clone(), "x1": x1.clone(),
                     "cond": tuple(c.clone() for c in cond), "generator": generator.get_state()})
        return real_loss(forward, x1, cond, generator=generator, schedule=schedule)

    def recording_clip(params, *args, **kwargs):
        seen[-1]["grads"] = _flat_grads(params)  # as DDP left them after backward, before clipping
        return real_clip(params, *args, **kwargs)

    retrain_mod.train, train_mod.flow_matching_loss, torch.nn.utils.clip_grad_norm_ = (
        recording_train, recording_loss, recording_clip)
    retrain_mod.main(argv)
    seen.append({"weights": parameters_to_vector(model[0].parameters()).detach().clone()})
    torch.save(seen, records / f"rank{dist.get_rank()}.pt")


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="this torch has no gloo backend")
def test_two_cpu_processes_train_in_lockstep_like_one_process_on_both_batches(tmp_path):
    from course_utils.checkpoint import load_model
    from course_utils.flow import flow_matching_loss
    from course_utils.mmdit import mmdit_small
    from course_utils.retrain import denoiser_run
    from course_utils.train import lr_factor

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_DEVICE": "cpu"}
    launch = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
         str(tmp_path), "mmdit", "--steps", str(STEPS), "--batch-size", str(BATCH), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    assert launch.returncode == 0, launch.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == STEPS + 1  # before each step, and after the last

    # The ranks hold the same weights after every step (and the same gradient in every step), bit for bit.
    for r0, r1 in zip(*ranks):
        assert torch.equal(r0["weights"], r1["weights"])
        assert "grads" not in r0 or torch.equal(r0["grads"], r1["grads"])
    # Each rank draws its own half of the batch.
    first = [r[0] for r in ranks]
    assert first[0]["x1"].shape[0] == first[1]["x1"].shape[0] == BATCH // 2
    assert not torch.equal(first[0]["x1"], first[1]["x1"])

    # Every step is one process's step on the union of both batches: a loss that is the mean over all 8 samples
    # (the mean of the two halves' means, with the same noise and times), then clipping and AdamW, in one process.
    config = denoiser_run("mmdit", steps=STEPS, batch_size=BATCH, device="cpu")
    reference = mmdit_small().train()
    vector_to_parameters(ranks[0][0]["weights"], reference.parameters())
    opt = torch.optim.AdamW(reference.parameters(), lr=config.lr, betas=(0.9, 0.99), weight_decay=config.weight_decay)
    for step in range(STEPS):
        halves = [flow_matching_loss(reference, r[step]["x1"], r[step]["cond"], schedule=config.schedule,
                                     generator=torch.Generator().set_state(r[step]["generator"])) for r in ranks]
        opt.zero_grad()
        ((halves[0] + halves[1]) / 2).backward()
        assert torch.allclose(_flat_grads(reference.parameters()), ranks[0][step]["grads"], rtol=1e-4, atol=1e-9)
        torch.nn.utils.clip_grad_norm_(reference.parameters(), config.grad_clip)
        lr = opt.param_groups[0]["lr"] = config.lr * lr_factor(step, config.steps, config.warmup, config.lr_decay)
        opt.step()
        weights = parameters_to_vector(reference.parameters()).detach()
        assert torch.allclose(weights, ranks[0][step + 1]["weights"], rtol=1e-6, atol=0.01 * lr)  # a step: ~lr

    # Rank 0 wrote the run: checkpoint, report and a snapshot with both ranks' random states.
    assert load_model(out / "mmdit.pt").config == reference.config
    report = json.loads((out / "report.json").read_text())
    assert (report["processes"], report["batch_size"], report["steps"]) == (2, BATCH, STEPS)
    assert report["checks"] == {"finite": True, "trained": True}
    assert len(torch.load(out / "snapshot.pt", weights_only=True)["rank_states"]) == 2


if __name__ == "__main__":  # a rank, started by torchrun from the test above
    _worker(Path(sys.argv[1]), sys.argv[2:])
