"""The training loop and checkpoints: exact resume after a kill, the CSV log, DDP under torchrun,
refusal of bad checkpoints, gradient clipping, the lr schedule and weight decay scope."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_worker import TinyNet, TinyNetConfig, batches, build_model, loss_fn, train_config  # noqa: E402

from avlib.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint  # noqa: E402
from avlib.train import TrainConfig, fit, make_optimizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "train_worker.py"
STEPS, CHECKPOINT_EVERY, KILL_AT_STEP = 12, 4, 10


def run_child(*args: str | Path) -> subprocess.CompletedProcess:
    # The child computes with as many threads as this process: CPU kernels round differently with
    # another thread count, and the resumed run must match the uninterrupted one bit for bit.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.run(
        [sys.executable, *map(str, args)], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def csv_steps(path: Path) -> list[int]:
    with path.open(newline="") as file:
        return [int(row["step"]) for row in csv.DictReader(file)]


@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """An uninterrupted run, and a run SIGKILLed after its step-8 checkpoint then resumed in this process."""
    base = tmp_path_factory.mktemp("resume")
    uninterrupted_dir, resumed_dir = base / "uninterrupted", base / "resumed"
    uninterrupted = build_model(seed=0)
    uninterrupted_history = fit(uninterrupted, loss_fn, batches, train_config(uninterrupted_dir, STEPS, CHECKPOINT_EVERY))

    child = run_child(WORKER, "--out-dir", resumed_dir, "--steps", STEPS,
                      "--checkpoint-every", CHECKPOINT_EVERY, "--kill-at-step", KILL_AT_STEP)
    assert child.returncode == -signal.SIGKILL, child.stderr
    killed_checkpoint_step = load_checkpoint(resumed_dir / "checkpoint.pt")["step"]
    killed_csv_steps = csv_steps(resumed_dir / "metrics.csv")

    resumed = build_model(seed=123)  # other initial weights: everything must come from the checkpoint
    resumed_history = fit(resumed, loss_fn, batches, train_config(resumed_dir, STEPS, CHECKPOINT_EVERY))
    return SimpleNamespace(
        uninterrupted=uninterrupted, uninterrupted_dir=uninterrupted_dir, uninterrupted_history=uninterrupted_history,
        resumed=resumed, resumed_dir=resumed_dir, resumed_history=resumed_history,
        killed_checkpoint_step=killed_checkpoint_step, killed_csv_steps=killed_csv_steps,
    )


def test_killed_run_stopped_between_checkpoints(resume_runs: SimpleNamespace) -> None:
    assert resume_runs.killed_checkpoint_step == 8
    assert resume_runs.killed_csv_steps == list(range(1, KILL_AT_STEP + 1))  # rows 9, 10 outlive the checkpoint


def test_resumed_run_equals_uninterrupted_run_exactly(resume_runs: SimpleNamespace) -> None:
    uninterrupted = resume_runs.uninterrupted.state_dict()
    resumed = resume_runs.resumed.state_dict()
    assert uninterrupted.keys() == resumed.keys()
    assert "features.1.running_var" in resumed and "features.1.num_batches_tracked" in resumed
    for name in uninterrupted:
        assert torch.equal(uninterrupted[name], resumed[name]), name
    assert not torch.equal(resumed["classifier.weight"], build_model(seed=0).state_dict()["classifier.weight"])

    uninterrupted_momentum = load_checkpoint(resume_runs.uninterrupted_dir / "checkpoint.pt")["optimizer"]["state"]
    resumed_momentum = load_checkpoint(resume_runs.resumed_dir / "checkpoint.pt")["optimizer"]["state"]
    for index, state in uninterrupted_momentum.items():
        assert torch.equal(state["momentum_buffer"], resumed_momentum[index]["momentum_buffer"])


def test_metrics_csv_has_one_row_per_step_after_resume(resume_runs: SimpleNamespace) -> None:
    assert csv_steps(resume_runs.resumed_dir / "metrics.csv") == list(range(1, STEPS + 1))
    columns = set(resume_runs.resumed_history["train"][0])
    assert columns == {"step", "loss", "accuracy", "lr", "grad_norm", "elapsed_s"}
    for uninterrupted_row, resumed_row in zip(
        resume_runs.uninterrupted_history["train"], resume_runs.resumed_history["train"], strict=True
    ):
        for column in ("step", "loss", "accuracy", "lr", "grad_norm"):
            assert uninterrupted_row[column] == resumed_row[column], (column, resumed_row["step"])


@pytest.mark.slow
def test_torchrun_two_ranks_end_with_equal_weights(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    child = run_child("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", WORKER,
                      "--out-dir", run_dir, "--steps", 4, "--checkpoint-every", 2, "--state-dir", tmp_path)
    assert child.returncode == 0, child.stderr[-4000:]

    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))
    assert rank0["calls"] == [(step, 0, 2) for step in range(4)]  # each rank drew its own shard
    assert rank1["calls"] == [(step, 1, 2) for step in range(4)]
    for name, tensor in rank0["model"].items():
        assert torch.equal(tensor, rank1["model"][name]), name

    checkpoint = load_checkpoint(run_dir / "checkpoint.pt", expected_model_class=TinyNet)
    assert checkpoint["step"] == 4
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(tensor, rank0["model"][name]), name
    rank_rngs = checkpoint["extra"]["rng"]
    assert len(rank_rngs) == 2 and not torch.equal(rank_rngs[0]["torch"], rank_rngs[1]["torch"])
    assert csv_steps(run_dir / "metrics.csv") == [1, 2, 3, 4]  # rank 0 alone logs


def save_tiny_checkpoint(path: Path, config: TinyNetConfig = TinyNetConfig()) -> TinyNet:
    model = TinyNet(config)
    save_checkpoint(path, model=model, optimizer=make_optimizer(model, TrainConfig(steps=1)), step=3,
                    config={"train": {"lr": 0.1}, "run": {"profile": "smoke"}})
    return model


def test_checkpoint_holds_provenance_and_model_config(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_tiny_checkpoint(path)
    assert [entry.name for entry in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left
    checkpoint = load_checkpoint(path, expected_model_class=TinyNet, expected_config=TinyNetConfig())
    assert checkpoint["step"] == 3
    assert checkpoint["config"]["model_class"] == "TinyNet"
    assert checkpoint["config"]["model_config"] == {"width": 4, "dropout": 0.3}
    assert checkpoint["config"]["run"] == {"profile": "smoke"}
    assert isinstance(checkpoint["git_commit"], str) and checkpoint["git_commit"]
    assert {"dirty", "avlib_version", "torch_version", "format_version", "optimizer"} <= checkpoint.keys()


@pytest.mark.parametrize("kept_fraction", [0.5, 0.99])
def test_truncated_checkpoint_is_refused(tmp_path: Path, kept_fraction: float) -> None:
    path = tmp_path / "checkpoint.pt"
    save_tiny_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept_fraction)])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)
    # fit must refuse it too rather than silently start over
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        fit(TinyNet(), loss_fn, batches, TrainConfig(steps=1, device="cpu", out_dir=str(tmp_path)))


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")


def test_checkpoint_of_another_model_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_tiny_checkpoint(path, TinyNetConfig(width=4))
    with pytest.raises(CheckpointError, match="width: checkpoint 4, expected 8") as error:
        load_checkpoint(path, expected_config=TinyNetConfig(width=8))
    assert "dropout" not in str(error.value)
    with pytest.raises(CheckpointError, match="holds a TinyNet, not a Linear"):
        load_checkpoint(path, expected_model_class=nn.Linear)

    wider = TinyNet(TinyNetConfig(width=8))
    with pytest.raises(CheckpointError, match=r"shape mismatch: classifier.weight \(2, 4\) in the checkpoint, \(2, 8\)"):
        load_model_state(wider, load_checkpoint(path)["model"], path)
    with pytest.raises(CheckpointError, match="width"):
        fit(wider, loss_fn, batches, TrainConfig(steps=1, device="cpu", out_dir=str(tmp_path)))


@pytest.mark.parametrize("grad_clip", [1.0, None])
def test_grad_clip_caps_the_global_norm(tmp_path: Path, grad_clip: float | None) -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    inputs, targets = torch.randn(16, 8) * 100, torch.randn(16, 3)

    def squared_error(module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return ((module(batch[0]) - batch[1]) ** 2).mean(), {}

    squared_error(model, (inputs, targets))[0].backward()
    gradient = torch.cat([parameter.grad.flatten() for parameter in model.parameters()])
    model.zero_grad(set_to_none=True)
    before = torch.cat([parameter.detach().flatten() for parameter in model.parameters()])

    config = TrainConfig(steps=1, lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip=grad_clip,
                         log_every=1, device="cpu", out_dir=str(tmp_path))
    history = fit(model, squared_error, lambda step: (inputs, targets), config)
    update = before - torch.cat([parameter.detach().flatten() for parameter in model.parameters()])

    assert history["train"][0]["grad_norm"] == pytest.approx(gradient.norm().item(), rel=1e-5)  # before clipping
    expected_update = gradient if grad_clip is None else gradient * grad_clip / gradient.norm()
    assert gradient.norm() > 100  # so that clipping to 1 matters
    torch.testing.assert_close(update, expected_update, rtol=1e-4, atol=1e-6)


def test_lr_decays_at_milestones(tmp_path: Path) -> None:
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)

    def weight_itself(module: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return module(batch).sum(), {}  # gradient 1: each step moves the weight by -lr

    config = TrainConfig(steps=7, lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=None,
                         lr_milestones=[3, 5], lr_gamma=0.1, log_every=1, device="cpu", out_dir=str(tmp_path))
    history = fit(model, weight_itself, lambda step: torch.ones(1, 1), config)
    assert [row["lr"] for row in history["train"]] == pytest.approx([0.1] * 3 + [0.01] * 2 + [0.001] * 2)
    assert model.weight.item() == pytest.approx(-(3 * 0.1 + 2 * 0.01 + 2 * 0.001))


def test_weight_decay_covers_conv_and_linear_weights_only() -> None:
    model = TinyNet()
    names = {id(parameter): name for name, parameter in model.named_parameters()}

    def decayed(config: TrainConfig) -> set[str]:
        groups = make_optimizer(model, config).param_groups
        return {names[id(parameter)] for group in groups if group["weight_decay"] > 0 for parameter in group["params"]}

    assert decayed(TrainConfig(steps=1)) == {"features.0.weight", "classifier.weight"}
    assert decayed(TrainConfig(steps=1, weight_decay_prefixes=["classifier."])) == {"classifier.weight"}


def test_iterable_batches_resume_by_skipping(tmp_path: Path) -> None:
    """A run extended from 3 to 6 steps over a list of batches equals a 6-step run (the list repeats)."""
    stored = [batches(step) for step in range(4)]
    config = dict(lr=0.1, checkpoint_every=3, log_every=1, device="cpu")
    straight = build_model(seed=0)
    fit(straight, loss_fn, stored, TrainConfig(steps=6, out_dir=str(tmp_path / "straight"), **config))
    extended = build_model(seed=0)
    fit(extended, loss_fn, stored, TrainConfig(steps=3, out_dir=str(tmp_path / "extended"), **config))
    history = fit(extended, loss_fn, stored, TrainConfig(steps=6, out_dir=str(tmp_path / "extended"), **config))
    assert [row["step"] for row in history["train"]] == [1, 2, 3, 4, 5, 6]
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, extended.state_dict()[name]), name


def test_eval_runs_in_eval_mode_on_schedule(tmp_path: Path) -> None:
    modes: list[bool] = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        modes.append(model.training)
        return {"accuracy": loss_fn(model, batches(1000))[1]["accuracy"]}

    model = build_model(seed=0)
    config = TrainConfig(steps=5, lr=0.1, log_every=5, device="cpu", out_dir=str(tmp_path))
    history = fit(model, loss_fn, batches, config, eval_fn=evaluate, eval_every=2)
    assert [row["step"] for row in history["eval"]] == [2, 4, 5]
    assert modes == [False, False, False] and model.training
    assert [row["step"] for row in history["train"]] == [5]


def test_changed_config_is_refused_by_key_and_resume_false_starts_over(tmp_path: Path) -> None:
    config = dict(lr=0.1, checkpoint_every=2, log_every=1, device="cpu", out_dir=str(tmp_path))
    fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=2, **config), run_config={"data": {"size": 32}})
    with pytest.raises(CheckpointError, match=r"differing keys: run.data.size, train.momentum\."):
        fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=3, momentum=0.5, **config),
            run_config={"data": {"size": 40}})
    # a longer run of the same config is an ordinary resume
    history = fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=3, **config), run_config={"data": {"size": 32}})
    assert [row["step"] for row in history["train"]][-1] == 3

    history = fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=1, **config), resume=False)
    assert [row["step"] for row in history["train"]] == [1]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1


def test_resume_accepts_a_setting_added_later_only_while_it_is_off(tmp_path: Path) -> None:
    config = dict(lr=0.1, checkpoint_every=2, log_every=1, device="cpu", out_dir=str(tmp_path))
    fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=2, **config), run_config={"model": {"width": 8}})
    # a switch that did not exist when the checkpoint was written, at its off value: the same computation
    history = fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=3, **config),
                  run_config={"model": {"width": 8, "renorm": False, "spectrogram_channel": None}})
    assert [row["step"] for row in history["train"]][-1] == 3
    with pytest.raises(CheckpointError, match=r"differing keys: run.model.renorm\."):
        fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=4, **config),
            run_config={"model": {"width": 8, "renorm": True, "spectrogram_channel": None}})
    with pytest.raises(CheckpointError, match=r"differing keys: run.model.depth\."):
        fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=4, **config),
            run_config={"model": {"width": 8, "renorm": False, "spectrogram_channel": None, "depth": 0}})


def test_extending_a_run_checks_the_steps_done_and_the_lr_of_each(tmp_path: Path) -> None:
    """A finished 4-step run extended to 6 with a milestone after its steps equals a 6-step run with that schedule;
    fewer steps than done, or a milestone that changes the lr of a done step, are refused by file and key."""
    config = dict(lr=0.1, checkpoint_every=2, log_every=1, device="cpu")
    section = {"train": {"steps": 4, "lr_milestones": [3]}, "pit_steps": 2, "probe_steps": 5}
    fit(build_model(seed=0), loss_fn, batches, TrainConfig(steps=4, lr_milestones=[3], out_dir=str(tmp_path / "run"), **config),
        run_config={"section": section})
    straight = build_model(seed=0)
    fit(straight, loss_fn, batches, TrainConfig(steps=6, lr_milestones=[3, 5], out_dir=str(tmp_path / "straight"), **config))

    def extend(steps: int, milestones: list[int], **changes) -> dict:
        model = build_model(seed=9)
        stored = {"train": {"steps": steps, "lr_milestones": milestones}, "pit_steps": 2, "probe_steps": 5, **changes}
        history = fit(model, loss_fn, batches, TrainConfig(steps=steps, lr_milestones=milestones, out_dir=str(tmp_path / "run"),
                                                           **config),
                      run_config={"section": stored}, other_budgets=("section.pit_steps",))
        return {"model": model, "history": history}

    with pytest.raises(CheckpointError, match=r"run.checkpoint\.pt has done 4 steps, more than this run's train\.steps = 3"):
        extend(3, [3])
    with pytest.raises(CheckpointError, match=r"differing keys: train\.lr_milestones \(train\.lr_milestones: the learning "
                                              r"rate of 0-based step 2, already done, would change from 0\.1 to 0\.01"):
        extend(6, [2, 5])
    with pytest.raises(CheckpointError, match=r"differing keys: train\.lr_milestones \("):
        extend(6, [1, 3, 5])  # a milestone appears among the done steps
    with pytest.raises(CheckpointError, match=r"differing keys: run\.section\.probe_steps\."):
        extend(6, [3, 5], probe_steps=6)  # not this run's budget (5 is not its 4 steps) nor declared another run's
    done = extend(6, [3, 5], pit_steps=5)  # another run's budget, declared, may change
    assert [row["step"] for row in done["history"]["train"]] == [1, 2, 3, 4, 5, 6]
    assert [row["lr"] for row in done["history"]["train"]] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001])
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, done["model"].state_dict()[name]), name


def loss_rows(losses, every: int = 1) -> list[dict[str, float]]:
    """A metrics.csv history: the loss of steps every, 2 * every, ..."""
    return [{"step": every * (index + 1), "loss": float(loss)} for index, loss in enumerate(losses)]


def test_loss_flattened_tells_a_late_exponential_and_noise_from_a_fall() -> None:
    from avlib.train import loss_flattened

    rng = np.random.default_rng(0)
    steps = np.arange(1, 3001)
    decay = 1.0 + 2.0 * np.exp(-steps / 200) + rng.normal(0, 0.02, steps.size)
    early = loss_flattened(loss_rows(decay[:300]))
    assert early.verdict == "falling" and not early.flat
    assert early.window_steps == 30 and early.earlier == (241, 270) and early.last == (271, 300) and early.rows == (30, 30)
    assert early.relative_drop == pytest.approx((decay[240:270].mean() - decay[270:300].mean()) / decay[240:270].mean())
    assert early.low > 0.02 and early.low < early.relative_drop < early.high
    late = loss_flattened(loss_rows(decay))
    assert late.flat and -0.02 < late.low < late.high < 0.02

    assert loss_flattened(loss_rows(1.0 + rng.normal(0, 0.02, 1000))).flat  # pure noise
    linear = loss_flattened(loss_rows(2.0 - 0.001 * steps[:1000] + rng.normal(0, 0.02, 1000)))
    assert linear.verdict == "falling" and linear.relative_drop == pytest.approx(0.1 / 1.15, rel=0.05)
    # a wide interval that holds 0 is no evidence of flatness: 10 noisy rows a window cannot tell
    noisy = loss_flattened(loss_rows(1.0 + rng.normal(0, 0.3, 100), every=10))
    assert noisy.verdict == "not resolved" and noisy.low < -0.02 and noisy.high > 0.02
    assert loss_flattened(loss_rows(1.0 + 0.0005 * steps[:1000])).verdict == "rising"


def test_loss_end_label_gives_the_verdict_and_drop_or_why_there_is_none() -> None:
    from avlib.train import loss_end_label, loss_flattened

    decay = 1.0 + 2.0 * np.exp(-np.arange(1, 301) / 200) + np.random.default_rng(1).normal(0, 0.02, 300)
    flatness = loss_flattened(loss_rows(decay))
    label = loss_end_label(loss_rows(decay))
    assert label == (f"falling: {100 * flatness.relative_drop:.1f} % "
                     f"({100 * flatness.low:.1f} to {100 * flatness.high:.1f})")
    assert loss_end_label(loss_rows(decay[:8], every=10)) == "too few logged steps to judge"
    with pytest.raises(ValueError, match="no column 'loss'"):  # a wrong log is an error, not a table cell
        loss_end_label([{"step": 1, "accuracy": 0.5}])


def test_loss_flattened_reads_a_training_log_and_names_it_when_it_cannot(tmp_path: Path, capsys) -> None:
    import json

    from avlib.train import loss_flattened, main

    config = TrainConfig(steps=20, lr=0.1, log_every=2, checkpoint_every=20, device="cpu", out_dir=str(tmp_path / "run"))
    history = fit(build_model(seed=0), loss_fn, batches, config)
    log = tmp_path / "run" / "metrics.csv"
    with pytest.raises(ValueError, match=r"run.metrics\.csv: the windows of 2 steps before step 20 hold 1 and 1 logged rows"):
        loss_flattened(log)
    halves = loss_flattened(log, window=0.5)
    assert halves == loss_flattened(history["train"], window=0.5) and halves.rows == (5, 5)
    assert halves.earlier_mean == pytest.approx(np.mean([row["loss"] for row in history["train"][:5]]))
    assert main([str(log), "--window", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[str(log)]["verdict"] == halves.verdict
    assert main([str(log), "--window", "0.5"]) == 0
    assert capsys.readouterr().out.startswith(f"{log}: {halves.verdict} at step 20: mean loss ")
    assert main([str(log)]) == 2 and "logged rows" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no training log at .*missing.csv"):
        loss_flattened(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="the history has no column 'loss'"):
        loss_flattened([{"step": 1, "accuracy": 0.5}])
