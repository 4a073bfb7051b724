"""One configuration as one Tune trial: the layer between the training loop and the search.

A trial holds one placement group with everything it uses (:func:`trial_resources`): its
training CPUs/GPU and the CPUs of its Ray Data tasks, which :func:`pin_data_to_trial` keeps
inside it. A single-worker trial (the default) trains in the Tune trial's own process
(:class:`~search.train.runtime.TuneRuntime`); a multi-worker trial builds one
``TorchTrainer`` (DDP) whose workers run the same loop. ``run_trial`` is the Tune function
trainable for both; ``train_one`` runs one configuration through the same runtime.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ray
import ray.train
from ray import tune
from ray.data import DataContext
from ray.train import DataConfig as RayDataConfig
from ray.train.torch import TorchTrainer
from ray.tune import PlacementGroupFactory
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from search import storage
from search.cluster import connect
from search.config import ConfigError, ExperimentConfig, config_from_dict
from search.data.layouts import SourceError
from search.data.sets import PreparedSet
from search.data.stream import eval_dataset, train_dataset
from search.filenames import MANIFEST, TRAIN_RUNS, trial_dirname
from search.model.checkpoint import input_spec
from search.paths import default_shards_dir, resolve_user_path
from search.train.runtime import TuneRuntime, search_keys
from search.train.worker import SOURCE_SPLIT, Recipe, train_loop

EVAL_SPLITS = ("val", "test")
DRIVER_CPU = 0.01  # a DDP trial's own process only waits on fit(); Tune refuses {"CPU": 0}


class ShardedEvalDataConfig(RayDataConfig):
    """Split train equally between workers, but evaluation splits with ``equal=False``.

    Ray's default ``equal=True`` may drop rows to even the shards out; metrics must be
    computed on every validation image, so evaluation sets are split without dropping.
    """

    def _resolve_execution_options(self, dataset_name: str) -> Any:
        """Train's options for a split, keeping the train stream's ``preserve_order``.

        Train replaces each dataset's execution options with ones made from the driver's
        ``DataContext`` (``preserve_order`` off), which dropped the order the seeded stream
        asks for: a one-worker ``TorchTrainer`` trial then trained its second epoch on
        other batches than the same trial in-process (train loss 0.598 against 0.589)."""
        options = super()._resolve_execution_options(dataset_name)
        if dataset_name == "train":
            options.preserve_order = True
        return options

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        evals = {k: v for k, v in datasets.items() if is_eval_split(k)}
        rest = {k: v for k, v in datasets.items() if not is_eval_split(k)}
        output = (super().configure(rest, world_size, worker_handles, worker_node_ids, **kwargs)
                  if rest else [{} for _ in range(world_size)])
        for name, ds in evals.items():
            ds = ds.copy(ds)
            ds.context.execution_options = self._resolve_execution_options(name)
            for i, split in enumerate(ds.streaming_split(world_size, equal=False)):
                output[i][name] = split
        return output


def is_eval_split(name: str) -> bool:
    """Whether a dataset is scored, not trained on: val, test, and the extra sources' val."""
    return name in EVAL_SPLITS or name.startswith(SOURCE_SPLIT.format(""))


@dataclass(frozen=True)
class TrialData:
    """Every prepared set a trial reads, resolved once per search: the training set and the
    extra sources it scores (``data.extra_sources``), each with its manifest.

    The driver builds it (:func:`resolve_data`) and Tune hands the one value to every trial
    (``tune.with_parameters`` puts it in the object store once): no trial resolves a path or
    reads a manifest again, which with shards at a URI would be remote reads per trial.
    """

    train: PreparedSet
    extra: Mapping[str, PreparedSet] = field(default_factory=dict)


def resolve_shards(cfg: ExperimentConfig) -> str:
    """Absolute path (or URI) of the shards to train on (the demo set when none is configured)."""
    if storage.is_uri(cfg.data.shards):
        uri = cfg.data.shards.rstrip("/")
        # One cheap existence check here, so a wrong URI fails before any trial starts.
        if not storage.exists(storage.join(uri, MANIFEST)):
            raise SourceError(f"no prepared shards at {uri} ({MANIFEST} not found): run "
                              "'deepfake-search prepare --layout ... --out' and upload the "
                              "folder, or fix data.shards")
        return uri
    shards = resolve_user_path(cfg.data.shards) if cfg.data.shards else default_shards_dir("demo")
    shards = shards.resolve()
    if not (shards / MANIFEST).is_file():
        raise SourceError(f"no prepared shards at {shards} ({MANIFEST} missing): run "
                          "'deepfake-search prepare --layout ... --out' first, or set data.shards")
    return str(shards)


def resolve_extra_sources(cfg: ExperimentConfig) -> dict[str, PreparedSet]:
    """``data.extra_sources`` opened (absolute folders or URIs, manifests read), each checked
    to hold images in its validation split; a ConfigError names the key and the fix."""
    out: dict[str, PreparedSet] = {}
    for name, folder in cfg.data.extra_sources.items():
        key = f"data.extra_sources.{name}"
        where = folder.rstrip("/") if storage.is_uri(folder) else str(
            resolve_user_path(folder).resolve())
        try:
            opened = PreparedSet.open(where)
        except (SourceError, OSError, ValueError) as err:
            raise ConfigError(f"{key}: no prepared shards at {where} ({err}). Run "
                              "'deepfake-search prepare --layout ... --out FOLDER' and set "
                              f"{key}=FOLDER") from None
        if not opened.rows("val"):
            raise ConfigError(f"{key}: {where} has no validation images to select on: prepare "
                              "it with a validation split, or drop the source")
        out[name] = opened
    return out


def warn_resize_mismatch(train: PreparedSet, extra: Mapping[str, PreparedSet]) -> list[str]:
    """A warning for each extra source prepared at another size than the training shards.

    Its images reach the model through another resize chain (prepared at one size, resized
    again when decoded) than the training images: pixel-level inputs (``npr``, ``highpass``)
    read exactly those differences, and an exported model's ``predict`` on the original
    files follows the training chain. Measured on CIPLAB prepared at 224 px against training
    shards at 64 px (``results/transfer-cpu/predict_check.md``): scores correlate at 0.994 but
    sit 0.064 apart, so thresholded figures differ."""
    told = []
    for name, source in extra.items():
        if None not in (train.prepared_size, source.prepared_size) and \
                source.prepared_size != train.prepared_size:
            told.append(f"data.extra_sources.{name}: {source.location} was prepared at "
                        f"{source.prepared_size} px, the training shards at "
                        f"{train.prepared_size} px; its figures then come through another "
                        "resize than training and predict use (pixel-level inputs such as npr "
                        f"and highpass see it). Prepare it with --size {train.prepared_size}.")
            warnings.warn(told[-1], stacklevel=2)
    return told


def resolve_data(cfg: ExperimentConfig) -> TrialData:
    """Every set the experiment reads, each manifest read once (see :class:`TrialData`)."""
    data = TrialData(PreparedSet.open(resolve_shards(cfg)), resolve_extra_sources(cfg))
    warn_resize_mismatch(data.train, data.extra)
    return data


def use_gpu(cfg: ExperimentConfig) -> bool:
    """Configured, else whether the cluster has GPUs."""
    if cfg.cluster.use_gpu is not None:
        return bool(cfg.cluster.use_gpu)
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def build_datasets(cfg: ExperimentConfig, data: TrialData | None = None, *,
                   splits: Sequence[str] = ("train", "val")) -> dict:
    """Lazy Ray datasets for the trainer (nothing is read until a worker iterates), over the
    search's resolved ``data`` (resolved here when run outside a search)."""
    data = data or resolve_data(cfg)
    spec = input_spec(cfg)
    common = {"size": spec["input_size"], "data_cpus": cfg.cluster.data_cpus}
    out: dict[str, Any] = {}
    for split in splits:
        if split == "train":
            out[split] = train_dataset(data.train, cfg.data, seed=cfg.seed,
                                       batch_size=cfg.optim.batch_size, **common)
        else:
            out[split] = _eval_split(cfg, data.train, split, common)
    if "val" in splits:  # every extra source's validation split, scored like the training one
        for name, prepared in data.extra.items():
            out[SOURCE_SPLIT.format(name)] = _eval_split(cfg, prepared, "val", common)
    return out


def _eval_split(cfg: ExperimentConfig, prepared: PreparedSet, split: str,
                common: Mapping[str, Any]) -> Any:
    ds = eval_dataset(prepared, split, decode_workers=cfg.data.decode_workers,
                      batch_size=cfg.optim.batch_size, **common)
    if _cache_fits(cfg, prepared, split, common["size"]):
        # Evaluation images never change: decode them once per trial, not per epoch.
        ds = ds.materialize()
    return ds


def _cache_fits(cfg: ExperimentConfig, prepared: PreparedSet, split: str, size: int) -> bool:
    """Whether a decoded evaluation split fits in a quarter of the object store."""
    if not cfg.data.cache_eval or not ray.is_initialized():
        return False
    decoded = prepared.rows(split) * 3 * size * size  # uint8 NCHW
    return decoded < 0.25 * ray.cluster_resources().get("object_store_memory", 0)


def build_trainer(cfg: ExperimentConfig, data: TrialData | None = None, *, name: str,
                  storage_path: str, callbacks: Sequence[Any] = (), max_failures: int = 0,
                  metric: str | None = None, mode: str = "max") -> ray.train.torch.TorchTrainer:
    """A ``TorchTrainer`` for one configuration (shards resolved, storage absolute)."""
    data = data or resolve_data(cfg)
    cfg = _with_locations(cfg, data)
    gpu = use_gpu(cfg)
    resources = worker_resources(cfg)
    checkpointing = ray.train.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode,
    ) if metric else ray.train.CheckpointConfig(num_to_keep=2)
    return TorchTrainer(
        train_loop,
        train_loop_config={"experiment": cfg.to_dict()},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.cluster.num_workers, use_gpu=gpu,
                                               resources_per_worker=resources),
        datasets=build_datasets(cfg, data),
        dataset_config=ShardedEvalDataConfig(datasets_to_split="all"),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, callbacks=list(callbacks),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=checkpointing,
            # No worker_runtime_env: a distinct runtime env would stop Ray from handing the
            # workers pooled, already-started processes. Threads are set in the loop.
        ),
    )


def _with_locations(cfg: ExperimentConfig, data: TrialData) -> ExperimentConfig:
    """``cfg`` naming the resolved sets' locations (what checkpoints and results record)."""
    extra = {name: prepared.location for name, prepared in data.extra.items()}
    return replace(cfg, data=replace(cfg.data, shards=data.train.location, extra_sources=extra))


def init_ray(cfg: ExperimentConfig, *, verbose: bool = False) -> None:
    """Join the configured cluster, or start a local one sized for at least one trial.

    A new single-node cluster gets a worker CPU, a CPU for Ray Data's read tasks and some
    for decoding, so small machines get logical CPUs to match. Workers' logs (Ray Data
    progress, Train's checkpoint lines) reach the driver only with ``verbose``; errors
    still come back as trial errors, with their error.txt.
    """
    connect(cfg.cluster.address, num_cpus=max(os.cpu_count() or 1, local_cpus(cfg)),
            verbose=verbose, env_vars=train_env(cfg))


def train_env(cfg: ExperimentConfig) -> dict[str, str]:
    """Environment for every process of this job (Ray Train reads these in its controller).

    Ray Train's controller polls its workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``
    (2 s by default) and only then sees a report or a finished run: on short trials that is
    seconds of idle per trial. A value already in the environment wins.
    """
    key = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    return {key: os.environ.get(key, f"{cfg.cluster.poll_interval_s:g}")}


def local_cpus(cfg: ExperimentConfig) -> int:
    """Logical CPUs one trial needs on a single node (rounded up)."""
    return math.ceil(sum(b.get("CPU", 0.0) for b in trial_bundles(cfg) + worker_bundles(cfg)))


def trial_bundles(cfg: ExperimentConfig) -> list[dict[str, float]]:
    """The placement group of one trial: everything it uses, reserved together.

    Bundle 0 is the trial's own process (Tune schedules its trainable there): the training
    CPUs and GPU of a single-worker trial, or a sliver for a DDP trial whose workers get
    their own group from ``TorchTrainer``. Bundle 1 holds the CPUs of the trial's Ray Data
    tasks (read, undersample, decode), which would otherwise compete with every trial's
    reservation for whatever the cluster has left and could wait for ever after a node loss.
    """
    c = cfg.cluster
    if c.num_workers == 1:
        head = {"CPU": float(c.cpus_per_worker)}
        if use_gpu(cfg):
            head["GPU"] = float(c.gpus_per_worker)
    else:
        head = {"CPU": DRIVER_CPU}
    return [head, {"CPU": float(c.data_cpus)}]


def worker_resources(cfg: ExperimentConfig) -> dict[str, float]:
    """What each DDP worker of a trial holds (``TorchTrainer``'s resources per worker)."""
    worker = {"CPU": float(cfg.cluster.cpus_per_worker)}
    if use_gpu(cfg):
        worker["GPU"] = float(cfg.cluster.gpus_per_worker)
    return worker


def worker_bundles(cfg: ExperimentConfig) -> list[dict[str, float]]:
    """The group ``TorchTrainer`` asks for a DDP trial's workers (none for one worker)."""
    n = cfg.cluster.num_workers
    return [] if n == 1 else [worker_resources(cfg)] * n


def trial_resources(cfg: ExperimentConfig) -> Any:
    """``trial_bundles`` as the ``PlacementGroupFactory`` Tune reserves per trial."""
    return PlacementGroupFactory(trial_bundles(cfg), strategy="PACK")


def pin_data_to_trial() -> None:
    """Run this process's Ray Data tasks inside its placement group (the trial's).

    Ray Data schedules its tasks with an explicit "SPREAD" strategy, which escapes the
    placement group a Tune trial captures for its children. Giving Data the group itself
    makes every read/decode task use the trial's reserved data CPUs (bundle 1), so trials
    can never starve each other's data, whatever the cluster looks like.
    """
    pg = get_current_placement_group()
    if pg is None:
        return
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    ctx = DataContext.get_current()
    with warnings.catch_warnings():
        # Deprecated "after January 2027" in favour of Data managing scheduling itself, which
        # it does not yet do inside a placement group; this is its documented way to do it.
        warnings.simplefilter("ignore")
        ctx.scheduling_strategy = strategy
        ctx.scheduling_strategy_large_args = strategy


@contextlib.contextmanager
def tune_signals_restored() -> Iterator[None]:
    """Within: a ``Tuner.fit``; on the way out the SIGINT and SIGUSR1 handlers are put back
    as they were. Tune installs its own and leaves them installed (Ray 2.60,
    ``tune._setup_signal_catching``), so the first Ctrl-C after a search or a ``train`` in the
    same process (a notebook, a script that goes on, ``run``'s export) would only set the
    finished run's flag and be lost."""
    main = threading.current_thread() is threading.main_thread()
    saved = {n: signal.getsignal(getattr(signal, n)) for n in ("SIGINT", "SIGUSR1")
             if main and hasattr(signal, n)}
    try:
        yield
    finally:
        for name, handler in saved.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(getattr(signal, name), handler)


def default_run_name(cfg: ExperimentConfig) -> str:
    """``train-<arch>-<time>``: the folder ``train`` writes to when not given ``--name``
    (the CLI checks it as a folder name before Ray starts, as it checks ``--name``)."""
    return f"train-{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_one(cfg: ExperimentConfig, *, name: str | None = None) -> Any:
    """Train one configuration through the search's own runtime; returns Tune's ``Result``.

    Without ``name`` every call is a new run (``train-<arch>-<timestamp>``); an existing
    run's name resumes it from its last checkpoint.
    """
    name = name or default_run_name(cfg)
    data = resolve_data(cfg)
    cfg = resolve_runtime(cfg, data)
    location = storage.join(storage.storage_root(cfg), name)
    trainable = trial_trainable(cfg, data, storage_path=storage.join(location, TRAIN_RUNS),
                                metric=None)
    if tune.Tuner.can_restore(location):
        tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=1),
                           run_config=tune.RunConfig(
                               name=name, storage_path=storage.storage_root(cfg), verbose=0,
                               checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                               failure_config=tune.FailureConfig(max_failures=1)))
    with tune_signals_restored():
        result = tuner.fit()[0]
    if result.error is not None:
        raise result.error
    if result.checkpoint is None and result.metrics.get("checkpoint_path"):
        # A DDP trial's checkpoints live in its Train run; Tune only sees their path.

        result = replace(result, checkpoint=tune.Checkpoint(result.metrics["checkpoint_path"]))
    return result


def resolve_runtime(cfg: ExperimentConfig, data: TrialData) -> ExperimentConfig:
    """Fix what the driver decides once for every trial: the sets' resolved locations and
    whether trials use GPUs (a trial must not ask the cluster again after a node is lost)."""
    cfg = _with_locations(cfg, data)
    return replace(cfg, cluster=replace(cfg.cluster, use_gpu=use_gpu(cfg)))


def trial_trainable(cfg: ExperimentConfig, data: TrialData, *, storage_path: str,
                    metric: str | None, mode: str = "max") -> Any:
    """``run_trial`` bound to the experiment and its resolved data, wrapped in the trial's
    placement group."""
    return tune.with_resources(
        tune.with_parameters(run_trial, base=cfg.to_dict(), data=data,
                             storage_path=storage_path, metric=metric, mode=mode),
        trial_resources(cfg))


def run_trial(params: dict[str, Any], base: dict[str, Any], data: TrialData,
              storage_path: str, metric: str | None, mode: str) -> None:
    """Tune function trainable: one trial, trained in this process or by a ``TorchTrainer``.

    ``storage_path`` is where a DDP trial's Train run keeps its checkpoints, named after the
    trial so that a retried or restored trial finds its own.
    """
    cfg = config_from_dict(base).with_params(params)
    pin_data_to_trial()
    if cfg.cluster.num_workers == 1:
        datasets = build_datasets(cfg, data)
        # A search's trial tells Tune only what the search reads (issue 29: Tune keeps
        # per-key statistics of every trial in the driver); ``train`` (no metric) tells all.
        keys = search_keys(metric, cfg.search.objectives) if metric else None
        Recipe(cfg, TuneRuntime(datasets, use_gpu=bool(cfg.cluster.use_gpu), keys=keys)).run()
        return

    trial_id = tune.get_context().get_trial_id()
    trainer = build_trainer(cfg, data, name=trial_dirname(trial_id), storage_path=storage_path,
                            callbacks=[TuneReportCallback()], metric=metric, mode=mode)
    trainer.fit()


__all__ = ["SOURCE_SPLIT", "ShardedEvalDataConfig", "TrialData", "build_datasets",
           "build_trainer", "is_eval_split", "pin_data_to_trial", "resolve_data",
           "resolve_extra_sources", "resolve_runtime", "resolve_shards", "run_trial", "train_one",
           "trial_bundles", "trial_resources", "trial_trainable", "tune_signals_restored", "use_gpu",
           "warn_resize_mismatch", "worker_bundles", "worker_resources"]
