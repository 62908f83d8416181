"""Fixtures shared by the separation task's and the separation app's tests."""

from __future__ import annotations

import pytest
import torch

from avlib.checkpoint import save_checkpoint
from avlib.data.world import generate_world
from avlib.models.unet import SeparationNet
from tests.test_separation import tiny_config


@pytest.fixture(scope="module")
def speakers(tmp_path_factory):
    """Six talking heads (three per gender), two 3 s clips each, written as mp4."""
    root = tmp_path_factory.mktemp("world")
    return generate_world("smoke", root=root, parts=("speakers",), progress=False, workers=1,
                          speakers=dict(clip_seconds=3.0))["speakers"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = SeparationNet(tiny_config())
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.pt"
    save_checkpoint(path, model=model, optimizer=torch.optim.Adam(model.parameters()), step=0, config={})
    return path
