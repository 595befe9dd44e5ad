"""The fakes themselves (tests/fakes.py) behave as the other tests assume."""

from __future__ import annotations

import numpy as np

from ricl.types import Box
from tests.fakes import DIM, FakeEncoder, make_dataset, make_studies, unit  # noqa: F401


def test_fake_encoder_is_deterministic_and_normalized():
    enc = FakeEncoder()
    a = enc.encode_images(["x/a.png", "y/a.png", "b.png"]).embeddings
    assert np.allclose(a[0], a[1]) and not np.allclose(a[0], a[2])
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert enc.encode_regions(["a.png"], [[Box(0, 0, 0.5, 0.5)]]).shape == (1, DIM)
