"""Training throughput of the multisensory network: videos/s and MFU per precision mode.

One video is one training example of the paper (section 3): its frames with the aligned and the shifted
audio, the visual stream computed once, then forward + backward + SGD step (momentum 0.9, gradient-norm
clip 5, sigmoid cross-entropy). Inputs are random tensors already on the device, so this measures the
model, not the data pipeline. MFU counts conv and classifier FLOPs only (``count_train_flops``).

    python bench/train_throughput.py                                  # CUDA: paper clip, all modes
    python bench/train_throughput.py --modes fp32,bf16                # CPU: reduced clip, under a minute
    python bench/train_throughput.py --batch 8 --out results/bench/train_throughput.md
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

# Run as a plain script from any directory, without installing avlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib.models.multisensory import MultisensoryConfig, MultisensoryNet, count_train_flops  # noqa: E402
from avlib.provenance import cpu_model  # noqa: E402

GRAD_CLIP_NORM = 5.0
H100_BF16_DENSE_TFLOPS = 790.0
# 1.07 s at 29.97 fps and 21 kHz: 32 frames and the audio that goes with them.
REDUCED_CONFIG = MultisensoryConfig(num_frames=32, frame_size=112, num_samples=round(21000 / 29.97 * 32), width=16)


@dataclass(frozen=True)
class Mode:
    name: str
    description: str
    bf16: bool
    channels_last: bool
    compile: bool


MODES = {
    mode.name: mode
    for mode in (
        Mode("fp32", "fp32", bf16=False, channels_last=False, compile=False),
        Mode("bf16", "bf16 autocast", bf16=True, channels_last=False, compile=False),
        Mode("bf16-cl", "bf16 autocast + channels_last_3d", bf16=True, channels_last=True, compile=False),
        Mode("bf16-cl-compile", "bf16 autocast + channels_last_3d + torch.compile", bf16=True, channels_last=True,
             compile=True),
    )
}


@dataclass
class Result:
    mode: Mode
    step_seconds: float | None = None
    videos_per_second: float | None = None
    peak_memory_gib: float | None = None
    error: str | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int,
                        help="videos per step (default: 5, the paper's per-GPU batch; 2 reduced)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 10; 2 reduced)")
    parser.add_argument("--warmup", type=int,
                        help="untimed steps first, compilation included (default: 3; 1 reduced)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from: {', '.join(MODES)}")
    parser.add_argument("--reduced", action=argparse.BooleanOptionalAction, default=None,
                        help="width 16, 32 x 112 x 112 frames, 1.07 s of audio (default: on for CPU)")
    parser.add_argument("--peak-tflops", type=float,
                        help=f"peak FLOP/s of the device for MFU (default: {H100_BF16_DENSE_TFLOPS:g}, H100 bf16 "
                             "dense, on CUDA; no MFU on CPU)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    unknown = [name for name in args.modes.split(",") if name not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {list(MODES)}")
    on_cuda = torch.device(args.device).type == "cuda"
    if args.reduced is None:
        args.reduced = not on_cuda
    if args.batch is None:
        args.batch = 2 if args.reduced else 5
    if args.steps is None:
        args.steps = 2 if args.reduced else 10
    if args.warmup is None:
        args.warmup = 1 if args.reduced else 3
    if args.peak_tflops is None and on_cuda:
        args.peak_tflops = H100_BF16_DENSE_TFLOPS
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_train_step(model: MultisensoryNet, mode: Mode, device: torch.device) -> Callable[..., torch.Tensor]:
    """One SGD step of the paper's shift task on (frames, audio, shifted_audio); returns the loss."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)

    def loss_of(frames: torch.Tensor, audio: torch.Tensor, shifted_audio: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.bf16):
            aligned, shifted = model(frames, audio, shifted_audio)
        logits = torch.cat([aligned, shifted]).float()
        labels = torch.cat([torch.ones_like(aligned), torch.zeros_like(shifted)]).float()
        return F.binary_cross_entropy_with_logits(logits, labels)

    loss_fn = torch.compile(loss_of) if mode.compile else loss_of

    def train_step(frames: torch.Tensor, audio: torch.Tensor, shifted_audio: torch.Tensor) -> torch.Tensor:
        loss = loss_fn(frames, audio, shifted_audio)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        optimizer.step()
        return loss.detach()

    return train_step


def measure(config: MultisensoryConfig, mode: Mode, device: torch.device, batch: int, warmup: int,
            steps: int) -> Result:
    torch.manual_seed(0)
    model = MultisensoryNet(config).to(device).train()
    frames = torch.rand(batch, 3, config.num_frames, config.frame_size, config.frame_size, device=device) * 2 - 1
    audio = torch.rand(batch, 2, config.num_samples, device=device) * 2 - 1
    shifted_audio = torch.rand(batch, 2, config.num_samples, device=device) * 2 - 1
    if mode.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        frames = frames.contiguous(memory_format=torch.channels_last_3d)
    train_step = make_train_step(model, mode, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        train_step(frames, audio, shifted_audio)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(frames, audio, shifted_audio)
    synchronize(device)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(loss):
        return Result(mode, error=f"non-finite loss {loss.item()}")
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Result(mode, elapsed / steps, batch * steps / elapsed, peak_memory)


def format_table(results: list[Result], config: MultisensoryConfig, args: argparse.Namespace,
                 device: torch.device, flops_per_video: int) -> str:
    size = (f"{config.num_frames} x {config.frame_size} x {config.frame_size} frames, "
            f"{config.num_samples} stereo samples, width {config.width}")
    clip = f"REDUCED clip, not the paper's: {size}" if args.reduced else f"paper configuration: {size}"
    peak = f"{args.peak_tflops:g} TFLOP/s for every mode" if args.peak_tflops else "none given, so no MFU"
    lines = [
        "# Multisensory network: training throughput",
        "",
        f"- device: {device_name(device)} ({device.type}); torch {torch.__version__}",
        f"- {clip}",
        f"- step: {args.batch} videos, each with aligned + shifted audio (visual stream once), "
        "forward + backward + SGD (momentum 0.9, grad-norm clip 5)",
        f"- FLOPs per video, forward + backward, convs and classifier: {flops_per_video / 1e9:.1f} GFLOP",
        f"- MFU peak: {peak}",
        f"- {args.warmup} warm-up steps, {args.steps} timed steps",
        "",
        "| mode | videos/s | step (ms) | TFLOP/s | MFU | peak memory (GiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        if result.error is not None:
            lines.append(f"| {result.mode.description} | failed: {result.error} | | | | |")
            continue
        achieved = flops_per_video * result.videos_per_second / 1e12
        mfu = f"{100 * achieved / args.peak_tflops:.1f} %" if args.peak_tflops else "-"
        memory = f"{result.peak_memory_gib:.1f}" if result.peak_memory_gib is not None else "-"
        lines.append(f"| {result.mode.description} | {result.videos_per_second:.2f} | "
                     f"{1000 * result.step_seconds:.0f} | {achieved:.3g} | {mfu} | {memory} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    config = REDUCED_CONFIG if args.reduced else MultisensoryConfig()
    flops_per_video = count_train_flops(config)
    results = []
    for name in args.modes.split(","):
        mode = MODES[name]
        print(f"measuring {mode.description} ...", file=sys.stderr, flush=True)
        try:
            results.append(measure(config, mode, device, args.batch, args.warmup, args.steps))
        except (RuntimeError, torch.OutOfMemoryError) as error:  # one mode failing must not lose the others' rows
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            results.append(Result(mode, error=f"{type(error).__name__}: {message[:120]}"))
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if mode.compile:
            torch._dynamo.reset()
    table = format_table(results, config, args, device, flops_per_video)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
