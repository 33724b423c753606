"""What a step costs a device, counted without one: the aten operators a function dispatches.

Every operator that is not a view is at least one kernel launch on a GPU, so a training step whose operators are few
keeps a GPU busy; "aten._local_scalar_dense" is a host sync (.item() and the like), which stalls it. Counted with a
`TorchDispatchMode`, on any device.
"""

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode


class _OperatorCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_operators(fn) -> Counter:
    """Run fn() and count the aten operators it dispatches that are not views, by name ("aten.mm": 12, ...)."""
    with _OperatorCounter() as counter:
        fn()
    return counter.counts
