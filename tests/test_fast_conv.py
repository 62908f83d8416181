"""The space-to-depth first video conv equals the plain TF SAME conv, forward and backward."""

from __future__ import annotations

import pytest
import torch

from avlib.models.fast_conv import space_to_depth_conv3d
from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet, SameConv3d, tf_same_padding


@pytest.mark.parametrize("size", [(8, 32, 33), (7, 31, 30), (5, 9, 8), (4, 6, 7)])
def test_equals_the_plain_strided_conv_forward_and_backward(size: tuple[int, int, int]) -> None:
    """im/conv1's 3 -> 64 (here 5), 5x7x7, stride 2, over even and odd sizes: SAME splits its padding unevenly
    (e.g. 1 + 2 frames for 8, 2 + 3 pixels for 32) and evenly (3 + 3 for 33)."""
    assert tf_same_padding(8, 5, 2) == (1, 2) and tf_same_padding(32, 7, 2) == (2, 3) and tf_same_padding(33, 7, 2) == (3, 3)
    generator = torch.Generator().manual_seed(sum(size))
    conv = SameConv3d(3, 5, (5, 7, 7), 2, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
        conv.bias.copy_(torch.randn(5, generator=generator))
    x = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
    conv = conv.double()
    plain_x = x.clone().requires_grad_()
    plain = conv(plain_x)
    upstream = torch.randn(plain.shape, generator=generator, dtype=torch.float64)
    (plain * upstream).sum().backward()
    plain_grads = (plain_x.grad, conv.weight.grad.clone(), conv.bias.grad.clone())
    conv.zero_grad()
    fast_x = x.clone().requires_grad_()
    fast = space_to_depth_conv3d(fast_x, conv.weight, conv.bias, stride=(2, 2, 2))
    assert fast.shape == plain.shape == (2, 5, *[-(-n // 2) for n in size])
    (fast * upstream).sum().backward()
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    for got, want in zip((fast_x.grad, conv.weight.grad, conv.bias.grad), plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_network_with_the_fast_conv_is_the_same_network() -> None:
    """Same weights from the same seed, same logits and gradients (in float64: within rounding)."""
    small = dict(num_frames=8, frame_size=32, num_samples=4096, width=4, bn_momentum=0.1)
    nets = []
    for fast in (False, True):
        torch.manual_seed(0)
        nets.append(MultisensoryNet(MultisensoryConfig(**small, fast_conv1=fast)).double())
    plain, fast = nets
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), fast.state_dict().values()))
    generator = torch.Generator().manual_seed(1)
    frames = torch.rand(2, 3, 8, 32, 32, generator=generator, dtype=torch.float64) * 2 - 1
    audio = torch.rand(2, 2, 4096, generator=generator, dtype=torch.float64) * 2 - 1
    shifted = audio.roll(512, dims=2)
    outputs = []
    for net in (plain, fast):
        aligned, off = net(frames, audio, shifted)
        (aligned.sum() - off.sum()).backward()
        outputs.append((aligned, off))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-9, atol=1e-10)
    for (name, got), want in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-8, atol=1e-10, msg=name)
    with pytest.raises(ValueError, match="equal C"):
        space_to_depth_conv3d(torch.zeros(1, 4, 8, 8, 8), plain.video.conv1.conv.weight)
