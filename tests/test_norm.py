"""Batch renormalisation (avlib.models.norm) against its closed form, in training and evaluation, and where the
paper profile uses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avlib.config import resolve
from avlib.models.multisensory import BatchNormNoScale, MultisensoryConfig, MultisensoryNet
from avlib.models.norm import BatchRenorm
from avlib.models.unet import UNet, UNetConfig

EPS, MOMENTUM, DECAY = 1e-3, 0.2, 0.9


def _batches() -> list[np.ndarray]:
    """Three (B, C, L) batches whose moments drift, so r and d move away from 1 and 0."""
    rng = np.random.default_rng(0)
    return [rng.normal(loc=step * np.array([0.5, -1.0, 2.0])[:, None], scale=1.0 + step, size=(4, 3, 6))
            for step in range(3)]


def _closed_form(batches: list[np.ndarray], gamma: np.ndarray, beta: np.ndarray):
    """TF 1.x renorm, written out: per step y, r, d, and the averages after the step."""
    renorm_mean, renorm_stddev = np.zeros(3), np.zeros(3)
    mean_weight = stddev_weight = 0.0
    running_mean, running_var = np.zeros(3), np.ones(3)
    steps = []
    for x in batches:
        mean, var = x.mean(axis=(0, 2)), x.var(axis=(0, 2))
        stddev = np.sqrt(var + EPS)
        mixed_mean = renorm_mean + (1 - mean_weight) * mean
        mixed_stddev = renorm_stddev + (1 - stddev_weight) * stddev
        r, d = stddev / mixed_stddev, (mean - mixed_mean) / mixed_stddev
        y = ((x - mean[:, None]) / stddev[:, None] * r[:, None] + d[:, None]) * gamma[:, None] + beta[:, None]
        renorm_mean = DECAY * renorm_mean + (1 - DECAY) * mean
        renorm_stddev = DECAY * renorm_stddev + (1 - DECAY) * stddev
        mean_weight = DECAY * mean_weight + (1 - DECAY)
        stddev_weight = DECAY * stddev_weight + (1 - DECAY)
        running_mean = (1 - MOMENTUM) * running_mean + MOMENTUM * renorm_mean / mean_weight
        running_var = (1 - MOMENTUM) * running_var + MOMENTUM * ((renorm_stddev / stddev_weight) ** 2 - EPS)
        steps.append({"y": y, "r": r, "d": d, "running_mean": running_mean, "running_var": running_var,
                      "renorm_mean": renorm_mean, "renorm_stddev": renorm_stddev})
    return steps


@pytest.mark.parametrize("scale", [False, True])
def test_training_steps_match_the_closed_form(scale: bool) -> None:
    norm = BatchRenorm(3, EPS, MOMENTUM, renorm_decay=DECAY, scale=scale).double()
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        if scale:
            norm.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
    gamma = norm.weight.detach().numpy() if scale else np.ones(3)
    expected = _closed_form(_batches(), gamma, norm.bias.detach().numpy())
    for step, (x, want) in enumerate(zip(_batches(), expected)):
        y = norm(torch.from_numpy(x))
        np.testing.assert_allclose(y.detach().numpy(), want["y"], rtol=1e-12, atol=1e-12, err_msg=f"step {step}")
        for name in ("running_mean", "running_var", "renorm_mean", "renorm_stddev"):
            np.testing.assert_allclose(getattr(norm, name).numpy(), want[name], rtol=1e-12, atol=1e-12, err_msg=name)
    assert np.allclose(expected[0]["r"], 1) and np.allclose(expected[0]["d"], 0)  # the first batch is plain BN
    assert np.abs(expected[2]["r"] - 1).min() > 0.05 and np.abs(expected[2]["d"]).min() > 0.01  # later ones are not


def test_gradient_is_batch_norms_times_r() -> None:
    """r and d carry no gradient: d y / d x is that of batch norm with gamma * r (F.batch_norm as the reference)."""
    norm = BatchRenorm(3, EPS, MOMENTUM, renorm_decay=DECAY, scale=True).double()
    batches = _batches()
    norm(torch.from_numpy(batches[0]))
    r = torch.from_numpy(_closed_form(batches[:2], np.ones(3), np.zeros(3))[1]["r"])
    x = torch.from_numpy(batches[1]).requires_grad_()
    weights = torch.arange(x.numel(), dtype=torch.float64).view_as(x).cos()
    (norm(x) * weights).sum().backward()
    reference = torch.from_numpy(batches[1]).requires_grad_()
    (F.batch_norm(reference, None, None, weight=norm.weight.detach() * r, training=True, eps=EPS) * weights).sum().backward()
    torch.testing.assert_close(x.grad, reference.grad, rtol=1e-10, atol=1e-12)
    assert norm.bias.grad is not None and norm.weight.grad is not None


def test_evaluation_is_batch_norm_with_the_inference_averages() -> None:
    norm = BatchRenorm(3, EPS, MOMENTUM, renorm_decay=DECAY, scale=True).double()
    for x in _batches():
        norm(torch.from_numpy(x))
    before = {name: buffer.clone() for name, buffer in norm.named_buffers()}
    norm.eval()
    x = torch.from_numpy(_batches()[1])
    expected = ((x - norm.running_mean[:, None]) / torch.sqrt(norm.running_var[:, None] + EPS) * norm.weight[:, None]
                + norm.bias[:, None])
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(buffer, before[name]) for name, buffer in norm.named_buffers())  # nothing updated
    with pytest.raises(ValueError, match=r"\(B, 3, \.\.\.\), got \(4, 5, 6\)"):
        norm(torch.zeros(4, 5, 6, dtype=torch.float64))


def test_renorm_flag_places_it_where_the_official_code_has_it() -> None:
    """Post-sum norms of the shift net (and merge_block_bn), every U-Net norm; off by default, on in the paper profile."""
    small = dict(num_frames=8, frame_size=32, num_samples=4096, width=4)
    plain, renormed = MultisensoryNet(MultisensoryConfig(**small)), MultisensoryNet(MultisensoryConfig(**small, renorm=True))
    assert not any(isinstance(module, BatchRenorm) for module in plain.modules())
    renorm_names = {name for name, module in renormed.named_modules() if isinstance(module, BatchRenorm)}
    post_sum = {name for name, module in plain.named_modules() if name.endswith(".bn") and not name.endswith("conv_a.bn")
                and ".projection" not in name and name != "video.conv1.bn" and "conv1_1" not in name
                and "audio_conv5_1" not in name and "merge1" not in name}
    assert renorm_names == post_sum and "fusion.bn" in renorm_names and "conv5_2.bn" in renorm_names
    assert isinstance(renormed.conv3_1.conv_a.bn, BatchNormNoScale) and isinstance(renormed.fusion.merge1.bn, BatchNormNoScale)
    unet = UNet(UNetConfig(width=2, renorm=True))
    norms = [module for module in unet.modules() if isinstance(module, (torch.nn.BatchNorm2d, BatchRenorm))]
    assert norms and all(isinstance(module, BatchRenorm) and module.weight is not None for module in norms)
    assert not any(isinstance(module, BatchRenorm) for module in UNet(UNetConfig(width=2)).modules())
    paper, synth = resolve("paper"), resolve("synth")
    assert paper.pretrain.model.renorm and paper.separation.model.unet.renorm and paper.separation.model.multisensory.renorm
    assert not (synth.pretrain.model.renorm or synth.separation.model.unet.renorm or resolve("smoke").pretrain.model.renorm)
