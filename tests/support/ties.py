"""Top-k agreement between two frameworks' logits that holds on any CPU: classes whose logits
sit within the comparison's tolerance of each other are a tie, and may swap places."""

import numpy as np


def assert_same_top(flax_logits, torch_logits, leaf, k):
    """The top-k classes of each row agree, but for ties: a class in one side's top k and not
    the other's must be within the two elements' allowed errors (`leaf`: the logits' verdict,
    its atol and rtol) of torch's k-th logit."""
    flax_values = np.asarray(flax_logits, np.float32)
    torch_values = np.asarray(torch_logits, np.float32)
    allowed = leaf.atol + leaf.rtol * np.abs(torch_values)
    for row, (mine, theirs, room) in enumerate(zip(flax_values, torch_values, allowed,
                                                   strict=True)):
        order = np.argsort(-theirs)
        kth = order[k - 1]
        differ = set(np.argsort(-mine)[:k].tolist()) ^ set(order[:k].tolist())
        for label in differ:
            gap = abs(float(theirs[label] - theirs[kth]))
            assert gap <= room[label] + room[kth], (
                f"row {row}: class {label} is in one side's top {k} only, {gap:.3e} from "
                f"torch's {k}th logit, beyond the allowed {room[label] + room[kth]:.3e}")
