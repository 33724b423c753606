"""The process group torchrun starts, as the training loop sees it (PyTorch's DistributedDataParallel, Li et al. 2020).

`torchrun --nproc-per-node N -m course_utils.retrain NAME` starts N copies of the command with RANK, WORLD_SIZE
and LOCAL_RANK set; `join_process_group` connects them (NCCL on CUDA, gloo on the CPU), and `train` asks
`process_group` where this process stands. A plain `python -m` run joins nothing and trains alone.
"""

import atexit
import os

import torch
import torch.distributed as dist

from .config import get_device


def join_process_group() -> int:
    """Join torchrun's process group if this process was started by torchrun (env WORLD_SIZE); returns its rank,
    0 when it runs alone. On CUDA each process takes the GPU of its LOCAL_RANK."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return dist.get_rank() if dist.is_initialized() else 0
    if not dist.is_available():
        raise RuntimeError(f"torchrun started this process, but this torch ({torch.__version__}) was built without "
                           "torch.distributed; run it with python -m instead.")
    cuda = get_device().type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    atexit.register(dist.destroy_process_group)  # leave the group cleanly however the command ends
    return dist.get_rank()


def process_group() -> tuple:
    """(ddp, rank, processes): whether this process trains in a process group, its rank, and how many train."""
    ddp = dist.is_available() and dist.is_initialized()
    return (True, dist.get_rank(), dist.get_world_size()) if ddp else (False, 0, 1)


def all_ranks(flag: torch.Tensor) -> torch.Tensor:
    """True (a 0-d tensor) where `flag` is true on every rank; a collective: every rank calls it."""
    flag = flag.int()
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.bool()


def gather_rank_states(gen: torch.Generator) -> list:
    """Every rank's (batch generator state, torch RNG state), in rank order; a collective: every rank calls it."""
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, (gen.get_state(), torch.get_rng_state()))
    return states
