"""The on/off-screen separation experiment (docs/paper.md §7): the full model and the u-net PIT baseline,
trained and scored on a fixed test list of speaker mixtures.

The pieces: the STFT (:mod:`avlib.spectral`), the U-Net with multisensory features and its inference
(:mod:`avlib.models.unet`), mixtures and the test list (:mod:`avlib.data.mixtures`), the losses
(:class:`avlib.losses.SeparationLoss`) and the scores (:func:`avlib.metrics.score_separation`). Settings:
:class:`avlib.config.SeparationSettings`. The synth profile departs from the paper in two places (ratio masks,
L1 on amplitudes; docs/world.md says what was measured). Any video is separated by the app
:mod:`avlib.separate`.

- :func:`build_model` makes the full model from the pretrained multisensory net, or the audio-only U-Net;
- :func:`train` trains one of them with the paper's optimiser (``separation.train``);
- :func:`evaluate` scores both models with both phases against the mixture, with gains and summaries;
- :func:`run` does all of it, once per training seed (``separation.seeds``); :func:`seed_summary` and
  :func:`seed_gains` give the tables and verdicts over seeds;
  ``python -m avlib.tasks.separation --profile P`` runs it from a shell.

Every checkpoint stores the resolved ``separation`` section (``run_config``), so :func:`avlib.separate.separate`
synthesises with the window and phase its evaluation used. No number of the paper's separation tables could be
verified (docs/paper.md §7.8).
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from avlib.config import Experiment, SeparationSettings, run_settings, seed_folder, training_seeds
from avlib.data.mixtures import MixtureBatches, MixtureConfig, load_test_mixtures, make_test_list, read_test_list, write_test_list
from avlib.data.shift import DecodedClips
from avlib.data.sources import SpeakerData, speaker_sources
from avlib.losses import SeparationLoss
from avlib.metrics import improvement_over_mixture, score_separation, summarize
from avlib.models.unet import MultisensoryFeatures, SeparationConfig, SeparationNet
from avlib.parallel import Job, run_jobs, shared_copy
from avlib.stats import confidence_interval, interval_over_seeds, seed_spread
from avlib.train import fit, resolve_device

#: Names of the scored systems in the tables.
SYSTEM_NAMES = {"full": "full model, predicted phase (ours)", "full_mixture_phase": "full model, mixture phase (ours)",
                "unet_pit": "u-net PIT, predicted phase, oracle assignment (ours)",
                "unet_pit_mixture_phase": "u-net PIT, mixture phase, oracle assignment (ours)",
                "mixture": "mixture (lower bound)"}


def mixture_config(settings: SeparationSettings) -> MixtureConfig:
    """The training and test window of the full model's inputs."""
    config = settings.model
    return MixtureConfig(num_frames=config.num_video_frames, fps=config.fps, sample_rate=config.spectral.sample_rate,
                         size=config.size, crop=config.crop, rms=config.rms)


def pit_config(settings: SeparationSettings) -> SeparationConfig:
    """The u-net PIT baseline: the full model's U-Net without video."""
    return replace(settings.model, video="none")


def test_list_name(seed: int) -> str:
    """The test list's table name under ``results/<profile>/tables/`` (one list per world seed)."""
    return f"separation_test_list_seed{seed}"


def speaker_data(experiment: Experiment, seed: int = 0, data_root: str | os.PathLike = "") -> SpeakerData:
    """The speakers' clips at the separation's rates (:func:`avlib.data.sources.speaker_sources`): the
    world's talking heads, or VoxCeleb under ``data_root/voxceleb/``."""
    return speaker_sources(experiment.synthetic, experiment.profile, seed, data_root, mixture_config(experiment.separation))


def ensure_test_list(out, clips: pd.DataFrame, settings: SeparationSettings, seed: int = 0) -> pd.DataFrame:
    """The fixed test list from ``out``'s tables (:func:`test_list_name`), made and written on first use.

    ``out`` is a :class:`avlib.report.results.ResultWriter` (notebooks 04 and 05 read the same file) or a
    folder, which gets ``tables/<name>.csv`` without provenance.
    """
    directory = Path(out) if isinstance(out, (str, os.PathLike)) else Path(out.directory)
    path = directory / "tables" / f"{test_list_name(seed)}.csv"
    if not path.exists():
        duration = mixture_config(settings).duration
        test_list = make_test_list(clips, settings.test_pairs, duration, seed=seed)
        if isinstance(out, (str, os.PathLike)):
            write_test_list(test_list, path)
            return read_test_list(path)
        out.table(test_list, test_list_name(seed), float_format="%.3f", caption=(
            "The fixed test list: on-screen clip (its video and voice) and off-screen clip (its voice), window starts in "
            f"seconds ({duration:.3f} s windows), both speakers' genders."))
    return read_test_list(path)


def build_model(config: SeparationConfig, pretrained: str | os.PathLike | None = None) -> SeparationNet:
    """The separation model; with ``pretrained``, the multisensory net starts from that checkpoint.

    The paper's ``full`` model initialises its multisensory sub-network from the shift model
    (``init_type = 'shift'``) and fine-tunes everything; the U-Net starts from scratch (docs/paper.md §7.5).
    ``pretrained`` must hold a network of ``config.multisensory``'s shape.
    """
    if config.video != "multisensory" or pretrained is None:
        return SeparationNet(config)
    from avlib.models.multisensory import from_checkpoint as multisensory_from_checkpoint

    net = multisensory_from_checkpoint(pretrained)
    if net.config.width != config.multisensory.width:
        raise ValueError(f"{pretrained} holds a multisensory net of width {net.config.width}, the separation "
                         f"config asks for width {config.multisensory.width}")
    return SeparationNet(config, MultisensoryFeatures(net)).train()


def train(model: SeparationNet, batches, settings: SeparationSettings, out_dir: str | os.PathLike, *, pit: bool = False,
          steps: int | None = None, seed: int = 0, device: str = "auto", resume: bool = True,
          run_config: dict | None = None) -> dict:
    """Train with ``settings.train`` (Adam, clipping 10, weight decay on the U-Net only, docs/paper.md §7.5) via
    :func:`avlib.train.fit`; ``steps`` defaults to ``settings.pit_steps`` with ``pit``, else ``settings.train.steps``.

    The checkpoint's ``run_config`` holds the resolved ``separation`` section, which :func:`avlib.separate.separate`
    reads its defaults from. A finished run resumes to a larger ``steps`` (docs/training.md): the section's two
    budgets (``train.steps``, ``pit_steps``) may change on resume, since each run's own is its ``TrainConfig.steps``.
    """
    config = replace(settings.train, steps=steps or (settings.pit_steps if pit else settings.train.steps), seed=seed,
                     device=device, out_dir=str(out_dir))
    loss = SeparationLoss(model.config.spectral, model.features is not None, pit, settings.magnitude_loss)
    # The section stores both budgets; each run's own is train.steps, checked on resume, the other's may change.
    return fit(model, loss, batches, config, resume=resume,
               run_config={"separation": run_settings(settings), "pit": pit, **(run_config or {})},
               other_budgets=("separation.train.steps", "separation.pit_steps"))


@dataclass
class SeparationScores:
    """What :func:`evaluate` computed: per-pair scores, their summary with SDR gains, and the gains per pair."""

    scores: pd.DataFrame  # one row per (pair, system, source), :func:`avlib.metrics.score_separation`
    summary: pd.DataFrame  # per (system, source): means, 95 % intervals, SDR gain over the mixture
    gains: pd.DataFrame  # per (pair, source, system): SDR minus the mixture's
    headline: dict[str, str]  # "full", "unet_pit" -> the system scored with ``settings.phase``


def headline_systems(settings: SeparationSettings) -> dict[str, str]:
    """The system names scored with ``settings.phase`` (the headline rows and :func:`avlib.separate.separate`'s)."""
    suffix = "" if settings.phase == "predicted" else "_mixture_phase"
    return {"full": "full" + suffix, "unet_pit": "unet_pit" + suffix}


def evaluate(full: SeparationNet, pit: SeparationNet, test_batch, test_list: pd.DataFrame, settings: SeparationSettings,
             progress: bool = True, mixture_scores: pd.DataFrame | None = None) -> SeparationScores:
    """Score the full model and the u-net PIT baseline (oracle assignment), each with its predicted and the
    mixture's phase, and the mixture, on every test pair; PESQ and STOI for the headline rows and the mixture.
    The summary holds each metric's mean and Student-t 95 % interval and the SDR gain over the mixture.
    ``mixture_scores``: the mixture's rows of an earlier evaluation on the same test list (they depend on no
    model), reused instead of scoring the mixture again."""
    systems = {"full": (full, False, "predicted"), "full_mixture_phase": (full, False, "mixture"),
               "unet_pit": (pit, True, "predicted"), "unet_pit_mixture_phase": (pit, True, "mixture")}
    headline = headline_systems(settings)
    scores = score_separation(systems, test_batch, test_list, settings.eval_batch, speech_metrics=list(headline.values()),
                              progress=progress, score_mixture=mixture_scores is None)
    if mixture_scores is not None:
        scores = pd.concat([scores, mixture_scores[mixture_scores.system == "mixture"]], ignore_index=True)
    summary = summarize(scores)
    gains = improvement_over_mixture(scores)
    gain_rows = []
    for (system, source), group in gains.groupby(["system", "source"], sort=False):
        mean, low, high = confidence_interval(group["sdr_gain"])
        gain_rows.append({"system": system, "source": source, "sdr_gain": mean, "sdr_gain_low": low, "sdr_gain_high": high})
    summary = summary.merge(pd.DataFrame(gain_rows), on=["system", "source"], how="left")
    return SeparationScores(scores, summary, gains, headline)


@dataclass
class SeparationRun:
    """What :func:`run` returns: the data, both models of every training seed, their histories and checkpoints,
    and the scores per seed; ``full``, ``pit``, ``evaluation``, ... are the first training seed's."""

    data: SpeakerData
    test_list: pd.DataFrame
    test_batch: dict
    seeds: list[int]  # training seeds, in the order of the lists below
    fulls: list[SeparationNet]
    pits: list[SeparationNet]
    full_histories: list[dict]
    pit_histories: list[dict]
    checkpoints: Path  # <checkpoints>/<profile>/separation, holding full/ and unet_pit/ (further seeds: train-seed<t>/)
    folders: list[Path]  # per training seed, the folder holding its full/ and unet_pit/
    evaluations: list[SeparationScores]

    @property
    def full(self) -> SeparationNet:
        return self.fulls[0]

    @property
    def pit(self) -> SeparationNet:
        return self.pits[0]

    @property
    def full_history(self) -> dict:
        return self.full_histories[0]

    @property
    def pit_history(self) -> dict:
        return self.pit_histories[0]

    @property
    def evaluation(self) -> SeparationScores:
        return self.evaluations[0]

    @property
    def full_checkpoint(self) -> Path:
        """The first training seed's full model (the one :func:`avlib.separate.separate` demos use)."""
        return self.folders[0] / "full" / "checkpoint.pt"

    def scores(self) -> pd.DataFrame:
        """Every seed's per-pair scores in one table, with a ``seed`` column (the training seed)."""
        return pd.concat([evaluation.scores.assign(seed=training_seed)
                          for training_seed, evaluation in zip(self.seeds, self.evaluations)], ignore_index=True)


def per_seed(scores: Sequence[pd.DataFrame], system: str, metric: str = "sdr", source: str = "on_screen",
             pairs: Sequence[int] | None = None) -> np.ndarray:
    """(S, N): ``system``'s ``metric`` on ``source`` for each training seed's scores (rows) and test pair (columns,
    in pair order; ``pairs`` chooses them). Every seed scored the same pairs."""
    rows = []
    for table in scores:
        chosen = table[(table.system == system) & (table.source == source)].set_index("pair")[metric].sort_index()
        rows.append(chosen if pairs is None else chosen.loc[list(pairs)])
    if any(not row.index.equals(rows[0].index) for row in rows):
        raise ValueError(f"the seeds' scores of {system!r} hold different test pairs; a paired comparison needs the same")
    return np.stack([row.to_numpy(dtype=np.float64) for row in rows])


def seed_gains(evaluations: Sequence[SeparationScores], system: str, pairs: Sequence[int] | None = None) -> np.ndarray:
    """(S, N) on-screen SDR gains over the mixture of ``system``, per training seed and test pair."""
    return per_seed([evaluation.scores for evaluation in evaluations], system, "sdr", "on_screen", pairs) - \
        per_seed([evaluation.scores for evaluation in evaluations], "mixture", "sdr", "on_screen", pairs)


def seed_summary(evaluations: Sequence[SeparationScores], metrics: Sequence[str] = ("sdr", "sir", "sar", "pesq", "stoi"),
                 pairs: Sequence[int] | None = None) -> pd.DataFrame:
    """Per (system, source): each metric's mean over the training seeds' means; SDR's seed spread (sample sd, min,
    max of the per-seed means) and its 95 % interval over seeds and test pairs (:func:`avlib.stats.seed_interval`),
    and the same for the SDR gain over the mixture; ``seeds`` and ``n`` (pairs). With one seed the intervals are the
    Student-t ones over pairs. ``pairs``: only these test pairs (e.g. the same-gender ones)."""
    tables = [evaluation.scores if pairs is None else evaluation.scores[evaluation.scores.pair.isin(list(pairs))]
              for evaluation in evaluations]
    rows = []
    for (system, source), _ in tables[0].groupby(["system", "source"], sort=False):
        row = {"system": system, "source": source}
        for metric in metrics:
            if metric in tables[0]:
                values = per_seed(tables, system, metric, source)
                row[metric] = float(np.nanmean(np.nanmean(values, axis=1))) if np.isfinite(values).any() else float("nan")
        sdr = per_seed(tables, system, "sdr", source)
        gain = sdr - per_seed(tables, "mixture", "sdr", source)
        spread = seed_spread(sdr.mean(axis=1))
        row.update(sdr_seed_sd=spread["sd"], sdr_seed_min=spread["min"], sdr_seed_max=spread["max"])
        for name, values in (("sdr", sdr), ("sdr_gain", gain)):
            mean, low, high = interval_over_seeds(values)
            row.update({name: mean, f"{name}_low": low, f"{name}_high": high})
        if system == "mixture":  # no gain over itself
            row.update(sdr_gain=float("nan"), sdr_gain_low=float("nan"), sdr_gain_high=float("nan"))
        row.update(seeds=len(tables), n=sdr.shape[1])
        rows.append(row)
    return pd.DataFrame(rows)


def run(experiment: Experiment, *, seed: int = 0, data_root: str | os.PathLike = "",
        checkpoint_root: str | os.PathLike | None = None, device: str = "auto", resume: bool = True, out=None,
        progress: bool = True) -> SeparationRun:
    """Load the speakers, ensure the pretrained network, train the full model and the u-net PIT baseline with each
    training seed, and score them on the fixed test list.

    Training seeds (``separation.seeds``, :func:`avlib.config.training_seeds`: ``seed``, ``seed + 1``, ...) set the
    U-Net's initialisation and the training mixtures' order (u-net PIT draws its batches from the training seed + 1,
    as it always did); the speakers and the test list are ``seed``'s for all. The test mixtures are decoded once and
    the mixture's own scores computed once, for every seed. The first training seed trains in
    ``<checkpoints>/<profile>/separation/{full,unet_pit}/``, each further seed ``t`` in ``.../train-seed<t>/``.
    With ``experiment.seed_processes`` > 1 every (training seed, model) trains side by side in that many worker
    processes first (:func:`train_in_workers`); this process then reloads and scores them in the same order.

    ``out``: the :class:`avlib.report.results.ResultWriter` whose tables hold the test list (made and written on
    first use, :func:`ensure_test_list`); None writes it under ``<checkpoints>/<profile>/separation/``.
    """
    from avlib.tasks.pretrain import ensure_pretrained

    settings = experiment.separation
    checkpoints = experiment.checkpoint_dir(checkpoint_root) / "separation"
    device_name = resolve_device(device)
    torch.manual_seed(seed)
    data = speaker_data(experiment, seed, data_root)
    test_list = ensure_test_list(out if out is not None else checkpoints, data.table, settings, seed)
    pretrained = ensure_pretrained(experiment, seed, data_root=data_root, checkpoint_root=checkpoint_root, device=device)
    seeds = training_seeds(seed, settings.seeds)
    # every full model before any u-net PIT (at synth one full run costs ~5 u-net PIT runs): the short runs then fill
    # the gap beside an odd full run instead of delaying it
    runs = [(training_seed, kind) for kind in ("full", "unet_pit") for training_seed in seeds]
    if experiment.seed_processes > 1:
        train_in_workers(settings, pretrained, data.train, runs, seed, checkpoints, experiment.profile, device, resume,
                         experiment.seed_processes)
        resume = True  # every run is finished: the loop below reloads them
    test_batch = None
    fulls, pits, full_histories, pit_histories, folders, evaluations = [], [], [], [], [], []
    for training_seed in seeds:
        record = {"profile": experiment.profile, "seed": training_seed}
        folder = seed_folder(checkpoints, seed, training_seed)
        full, full_history = fit_model("full", settings, pretrained, data.train, folder, training_seed, device, resume, record)
        full_histories.append(full_history)
        pit, pit_history = fit_model("unet_pit", settings, pretrained, data.train, folder, training_seed, device, resume, record)
        pit_histories.append(pit_history)
        if test_batch is None:
            test_batch = load_test_mixtures(test_list, data.test)
        full.to(device_name)
        pit.to(device_name)
        evaluations.append(evaluate(full, pit, test_batch, test_list, settings, progress=progress,
                                    mixture_scores=evaluations[0].scores if evaluations else None))
        fulls.append(full)
        pits.append(pit)
        folders.append(folder)
    return SeparationRun(data, test_list, test_batch, seeds, fulls, pits, full_histories, pit_histories, checkpoints,
                         folders, evaluations)


def fit_model(kind: str, settings: SeparationSettings, pretrained: str | os.PathLike, clips, folder: Path,
              training_seed: int, device: str, resume: bool, record: dict) -> tuple[SeparationNet, dict]:
    """Build and train one of a training seed's models into ``folder/<kind>`` (a finished run is reloaded): ``full``
    from the training seed, or u-net PIT (``unet_pit``) from the training seed + 1, its batches too."""
    if kind == "full":
        torch.manual_seed(training_seed)  # each model's initialisation from its training seed, whatever ran before
        model = build_model(settings.model, pretrained)
        return model, train(model, MixtureBatches(clips, settings.batch_size, seed=training_seed), settings, folder / "full",
                            seed=training_seed, device=device, resume=resume, run_config=record)
    if kind != "unet_pit":
        raise ValueError(f"no separation model {kind!r}; use 'full' or 'unet_pit'")
    torch.manual_seed(training_seed + 1)  # u-net PIT's own draw, not what the full model's training left
    model = build_model(pit_config(settings))
    return model, train(model, MixtureBatches(clips, settings.pit_batch_size, seed=training_seed + 1, both_orders=False),
                        settings, folder / "unet_pit", pit=True, seed=training_seed, device=device, resume=resume,
                        run_config=record)


def _fit_in_worker(*args) -> None:
    """A worker's job: :func:`fit_model` (the parent reloads the finished run)."""
    fit_model(*args)


def shared_speaker_clips(clips, folder: Path, prefix: str):
    """``clips`` (:class:`~avlib.data.mixtures.SpeakerClips`) for worker processes: clips decoded into memory are
    written once to ``folder/<prefix>{frames,audio_tracks}.npy`` and mapped read-only by each worker
    (:func:`avlib.parallel.shared_copy`) instead of pickled; clips read from files go as they are."""
    if not isinstance(clips.clips, DecodedClips):
        return clips
    shared = copy.copy(clips)
    shared.clips = shared_copy(clips.clips, folder, ("frames", "audio_tracks"), prefix)
    return shared


def train_in_workers(settings: SeparationSettings, pretrained: str | os.PathLike, clips, runs: Sequence[tuple[int, str]],
                     seed: int, checkpoints: Path, profile: str, device: str, resume: bool, processes: int) -> None:
    """Train each (training seed, ``full`` | ``unet_pit``) of ``runs`` in ``processes`` worker processes
    (:func:`avlib.parallel.run_jobs`), into the folders :func:`run` trains them in.

    Training clips decoded into memory reach the workers through ``.npy`` files in ``checkpoints/.worker-data``
    that each maps read-only (:func:`avlib.parallel.shared_copy`), not as a pickled copy per worker; the folder is
    removed afterwards.
    """
    shared_dir = checkpoints / ".worker-data"
    try:
        shared = shared_speaker_clips(clips, shared_dir, "train-")
        jobs = [Job(f"separation {kind}, training seed {training_seed}", _fit_in_worker,
                    (kind, settings, pretrained, shared, seed_folder(checkpoints, seed, training_seed), training_seed, device,
                     resume, {"profile": profile, "seed": training_seed}))
                for training_seed, kind in runs]
        run_jobs(jobs, processes)
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)


def _run(experiment: Experiment, args) -> dict:
    result = run(experiment, seed=args.seed, data_root=args.data_root, checkpoint_root=args.checkpoints,
                 device=args.device, out=None, progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    summary_table = seed_summary(result.evaluations)
    result.scores().to_csv(args.out / "separation_scores_per_pair.csv", index=False)
    summary_table.to_csv(args.out / "separation_summary.csv", index=False)
    summary = {"checkpoint": str(result.full_checkpoint), "test_pairs": len(result.test_list), "seeds": result.seeds,
               "phase": experiment.separation.phase, "tables": ["separation_scores_per_pair.csv", "separation_summary.csv"]}
    rows = summary_table[summary_table.source == "on_screen"].set_index("system")
    for role, system in result.evaluation.headline.items():
        summary[f"{role} on-screen SDR dB"] = float(rows.loc[system, "sdr"])
        summary[f"{role} on-screen SDR gain dB"] = float(rows.loc[system, "sdr_gain"])
        summary[f"{role} on-screen SDR dB per seed"] = [float(value) for value in per_seed(
            [evaluation.scores for evaluation in result.evaluations], system).mean(axis=1)]
    summary["mixture on-screen SDR dB"] = float(rows.loc["mixture", "sdr"])
    return {key: (None if isinstance(value, float) and not np.isfinite(value) else value) for key, value in summary.items()}


def main(argv: Sequence[str] | None = None) -> int:
    from avlib.tasks.cli import run_task

    return run_task("separation", "separation", "On/off-screen speech separation (docs/paper.md §7): train the full "
                    "model and the u-net PIT baseline, score them on the fixed test list.", _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
