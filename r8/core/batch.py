"""A batch of model inputs: one array (a single-input model, the common case) or a tuple of
arrays, one per input in the model's order (a siamese model's two images). Kept apart from
``r8.data`` so the runtimes need not import torchvision to slice a batch."""

import numpy as np


def input_arrays(images) -> tuple[np.ndarray, ...]:
    """The batch as a tuple of arrays, one per model input."""
    return tuple(images) if isinstance(images, (tuple, list)) else (images,)


def rows(images, index):
    """The samples ``index`` (a slice or an index array) of every input; the same kind of batch back."""
    if isinstance(images, (tuple, list)):
        return tuple(x[index] for x in images)
    return images[index]


def size(images) -> int:
    """How many samples the batch holds."""
    return len(input_arrays(images)[0])
