"""Separation scoring streamed over the test list: decoding the pairs a batch at a time gives the scores of the
whole test batch in memory."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from avlib.metrics import score_separation
from avlib.models.unet import SeparationConfig, SeparationNet, UNetConfig
from avlib.spectral import SpectralConfig


@pytest.mark.slow
def test_scores_from_a_loader_equal_those_of_the_whole_batch() -> None:
    torch.manual_seed(0)
    config = SeparationConfig(spectral=SpectralConfig.for_sample_rate(8000, fft_size=1024),
                              unet=UNetConfig(width=2, bn_momentum=0.1), video="none", fps=29.97 / 4, size=40, crop=32)
    model = SeparationNet(config).eval()
    generator = torch.Generator().manual_seed(1)
    count = 5
    on_screen, off_screen = (0.3 * torch.randn(count, 2, config.num_samples, generator=generator) for _ in range(2))
    whole = {"frames": torch.zeros(count, config.num_video_frames, config.crop, config.crop, 3, dtype=torch.uint8),
             "mixture": on_screen + off_screen, "on_screen": on_screen, "off_screen": off_screen}
    test_list = pd.DataFrame({"pair": range(10, 10 + count), "same_gender": [True, False, True, False, True],
                              "on_gender": ["f"] * count, "off_gender": ["m"] * count})
    loaded = []

    def load(rows: pd.DataFrame) -> dict[str, torch.Tensor]:
        loaded.append(list(rows.pair))
        positions = [int(pair) - 10 for pair in rows.pair]
        return {key: value[positions] for key, value in whole.items()}

    systems = {"pit": (model, True), "straight": (model, False)}
    in_memory = score_separation(systems, whole, test_list, batch_size=2, speech_metrics=False)
    streamed = score_separation(systems, load, test_list, batch_size=2, speech_metrics=False)
    assert loaded == [[10, 11], [12, 13], [14]]
    pd.testing.assert_frame_equal(streamed, in_memory)
    assert len(streamed) == count * 3 * 2 and list(streamed.pair.unique()) == list(test_list.pair)
    assert streamed.sdr.notna().all()
