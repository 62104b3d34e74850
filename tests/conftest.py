"""Shared fixtures: tiny generators / discriminators that build and run in milliseconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hyperinverter import Discriminator, Generator

REFERENCE_DIR = Path(__file__).parent / "data" / "reference"

#: Tiny generator config: 32 px, channels 32 (4..8 px) -> 8 (32 px).
TINY_G = dict(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=32, mapping_layers=2)
#: Tiny discriminator config: 16 px, channels 16 -> 32.
TINY_D = dict(img_resolution=16, channel_base=256, channel_max=32, mbstd_group_size=2)


def make_generator(seed: int = 0, nonzero_noise: bool = True, **overrides) -> Generator:
    """A tiny generator with deterministic weights.

    ``noise_strength`` parameters initialise to 0 (as in StyleGAN2); with ``nonzero_noise`` they get
    distinct non-zero values so that the noise inputs actually influence the image.
    """
    torch.manual_seed(seed)
    G = Generator(**{**TINY_G, **overrides})
    if nonzero_noise:
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.1 + 0.2 * torch.rand([]).item())
    return G.eval()


def make_discriminator(seed: int = 0, **overrides) -> Discriminator:
    torch.manual_seed(seed)
    return Discriminator(**{**TINY_D, **overrides}).eval()


@pytest.fixture
def tiny_G() -> Generator:
    return make_generator()


@pytest.fixture
def tiny_D() -> Discriminator:
    return make_discriminator()


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Every test starts from the same global seed; full-precision math on any device."""
    torch.manual_seed(0)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of tiny-tensor tests: faster than two, and it leaves the
    other core alone on a busy 2-core machine. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
