"""DP-SGD training of a planned ``train`` job: data in, safetensors weights and a model card out.

Guarantee. For the plan's (ε_std, σ, q, T, C): the released weights are (ε, δ)-DP with respect to adding or
removing one privacy unit (one row: datasets with several rows per unit are refused, and the read keeps at most
one row per id), where ε ≥ ε_std + ε_PRV: ε_std (pure) pays for the feature standardisation and ε_PRV is the PRV
accountant's bound for T Poisson-subsampled Gaussian steps, calibrated not to exceed ε − ε_std. The held-out
metrics add ``ε_metrics`` (pure ε). Charged: ``(ε + ε_metrics, δ)``.

Mechanism, step by step:

1. The plan is checked against the spec (hash) and the dataset's declaration; the encoding comes from the
   declaration only (`sandbox.train.encoding`).
2. Rows are read through a locked DuckDB connection (`sandbox.train._data`); the id-hash split holds one unit
   in five out for metrics. Up to ``ResourceLimits.stream_above_rows`` registered rows (a threshold on the
   public count, never on the data) both sides are encoded to float32 arrays held for the run; above it the
   run streams (`sandbox.train.stream`): passes over the engine, each encoding only the rows its block of
   Poisson batches selected, the standardisation's sums taken in the first pass and the held-out counts in a
   last one, so the process never holds the split. A dataset declared ``engine: spark`` streams its passes from
   Spark (`sandbox.train._spark_data`, same split, same rows per side).
3. The bounded numeric inputs are standardised with a noisy mean and spread (`sandbox.train.standardise`,
   ε_std, discrete Laplace); training runs on ``(x − m) / s`` and the map is folded back into the first layer
   afterwards, so the released model reads the public encoding unchanged.
4. Opacus ``PrivacyEngine`` (PRV accountant) wraps the model with ghost clipping (``grad_sample_mode="ghost"``):
   each example's gradient is clipped to L2 norm C, the clipped sum gets Gaussian noise N(0, σ²C²) per
   coordinate, and the result is divided by the constant expected batch size. Batches are Poisson samples:
   every training row joins each of the T batches independently with probability q (in memory: vectorised
   ``rand < q`` over all rows; streaming: geometric skips over the rows × steps grid of a pass, the same
   distribution). An empty batch still takes a pure-noise step. After the loop the engine's
   history must be exactly the plan's (σ, q) for T steps; the card's ε is `sandbox.dp.prv.epsilon_for` of the
   steps taken.
5. Randomness: the spec's ``seed`` initialises parameters only. The Poisson coins and the Gaussian noise
   come from two dedicated CPU ``torch.Generator`` objects reseeded from 63 bits of operating-system entropy
   (``secrets``) before every step (the streaming sampler: before every draw of skips), because subsampling
   amplification assumes the analyst cannot predict batch membership. ``torchcsprng`` is not installed, so
   ``PrivacyEngine(secure_mode=True)`` raises ``ImportError``; we keep ``secure_mode`` off for the engine and
   turn on the optimizer's floating-point mitigation (``secure_mode`` in ``_generate_noise``: the sum of four
   Gaussians halved), which is the part of secure mode that does not need the CSPRNG. The Gaussian samples
   themselves are floating-point (Box–Muller on a Mersenne Twister stream): see docs/mechanisms/dp_sgd.md for
   what that leaves open.
6. The held-out metrics are released with OpenDP's discrete Laplace (`sandbox.train.metrics` through
   `sandbox.dp.DiscreteLaplace`).
7. Weights go to ``model.safetensors`` (never pickle), the card to ``model_card.json``; the output digest is
   ``H(weights bytes ‖ canonical card JSON)`` with the home suite's hash ``H`` (``sha256:`` intl, ``sm3:`` sm;
   the card's ``weights.sha256`` field carries the weights' digest with its prefix in either suite).

Failures inside steps 2–7 surface as ``INTERNAL`` "training failed" with the stage name only: no tensor, value
or library message reaches the caller.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import secrets
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from catalog.errors import INTERNAL, INVALID_REQUEST, DomainError
from catalog.fingerprint import HashAlg
from catalog.fingerprint import digest as fingerprint_digest
from catalog.registry import Dataset
from catalog.sealed import Sealer, readable_path
from catalog.storage import LocalStorage, Storage
from sandbox.dp.prv import epsilon_for
from sandbox.train._data import ResourceLimits, Split, TrainingStream, read_splits
from sandbox.train._models import build_model, first_layer, tensors_of
from sandbox.train.card import DataSource, ModelCard, PrivacyReport, TrainingReport, WeightsRef, extraction_bound
from sandbox.train.encoding import FeatureEncoding, encoding_for
from sandbox.train.metrics import MetricsRelease, held_out_counts, release_counts, release_metrics
from sandbox.train.plan import TrainingPlan
from sandbox.train.spec import TrainSpec, structural_problems
from sandbox.train.standardise import (
    Standardisation,
    dp_standardisation,
    fixed_point_sums,
    release_standardisation,
    scaled_columns,
)
from sandbox.train.stream import GridSampler, PassBatches, steps_per_pass
from sandbox.train.weights import save_weights, weights_bytes

__all__ = ["ProgressFn", "TrainingResult", "train"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"

NOISE_SOURCE = ("torch.normal on CPU torch.Generator (Mersenne Twister) reseeded from 63 bits of OS entropy "
                "before every step; Opacus floating-point mitigation on (sum of 4 Gaussians / 2); no torchcsprng, "
                "so PrivacyEngine secure_mode is off")
LIMITS = (
    "Gaussian noise is sampled in floating point from a non-cryptographic generator (reseeded from OS "
    "entropy every step); the guarantee is for idealised real-valued noise.",
    "The sample rate and step count derive from the registered row count, which they reveal to within "
    "about one batch.",
    "Privacy unit = one row = one id; datasets declaring several rows per unit are refused.",
    "The guarantee covers this model and card; scoring access adds model-extraction risk (see "
    "model_extraction_bound).",
)


@dataclass(frozen=True)
class TrainingResult:
    """What a finished run leaves: the weights file, its model card and the digest covering both."""

    weights_path: Path
    card: ModelCard
    output_digest: str


def _os_seed() -> int:
    return secrets.randbits(63)


class _PoissonBatches(DataLoader[tuple[torch.Tensor, ...]]):
    """``steps`` Poisson batches per pass: each row joins each batch independently with probability ``q``.

    Only ``len()`` and ``.dataset`` are read by Opacus; iteration is vectorised over the whole tensor.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, sample_rate: float, steps: int,
                 generator: torch.Generator) -> None:
        super().__init__(TensorDataset(x, y), batch_size=1)
        self._x, self._y = x, y
        self._q = sample_rate
        self._steps = steps
        self._gen = generator

    def __len__(self) -> int:
        return self._steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        n = self._x.shape[0]
        for _ in range(self._steps):
            self._gen.manual_seed(_os_seed())
            # float64 uniforms: P(u < q) equals q to within 2^-53 (float32 would be off by up to 2^-24).
            idx = torch.nonzero(torch.rand(n, generator=self._gen, dtype=torch.float64) < self._q).squeeze(1)
            yield self._x[idx], self._y[idx]


@dataclass(frozen=True)
class _Fitted:
    model: nn.Module
    steps: int
    epsilon_prv: float


_Batch = tuple[np.ndarray, np.ndarray]


class _StreamBatches(DataLoader[tuple[torch.Tensor, ...]]):
    """The streaming runner's batches (`sandbox.train.stream`): ``len()`` steps per pass of the loop, taken in
    order from ``batches`` (every step of the plan, block by block). ``.dataset`` is a one-row placeholder: only
    ``len()`` and ``.dataset`` are read by Opacus, and the runner overrides what it derives from them."""

    def __init__(self, batches: Iterator[tuple[np.ndarray, np.ndarray]], steps: int, width: int) -> None:
        super().__init__(TensorDataset(torch.zeros(1, width), torch.zeros(1)), batch_size=1)
        self._batches = batches
        self._steps = steps

    def __len__(self) -> int:
        return self._steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        for _ in range(self._steps):
            x, y = next(self._batches)
            yield torch.from_numpy(x), torch.from_numpy(y)


def _streamed(stream: TrainingStream, encoding: FeatureEncoding, plan: TrainingPlan, buffer_rows: int,
              standardise: Callable[[np.ndarray, np.ndarray], Standardisation]) -> Generator[_Batch, None, None]:
    """Every step's Poisson batch, standardised, pass by pass (`sandbox.train.stream`). The first pass also
    sums the standardisation's fixed-point statistics over every training row and hands them to
    ``standardise`` (the one DP release) before its first batch is yielded."""
    per_pass = steps_per_pass(plan.batch_size, buffer_rows, plan.steps)
    cols = scaled_columns(encoding)
    gen = torch.Generator()
    std: Standardisation | None = None
    done = 0
    while done < plan.steps:
        block = min(per_pass, plan.steps - done)
        sampler = GridSampler(plan.sample_rate, block, gen)
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        ss: list[np.ndarray] = []
        s1 = np.zeros(len(cols), np.int64)
        s2 = np.zeros(len(cols), np.int64)
        for batch, y, usable in stream.chunks(held_out=False):
            rows = np.flatnonzero(usable)
            if std is None and cols and plan.standardisation_epsilon > 0:
                a, b = fixed_point_sums(encoding.encode_batch(batch.take(rows)), encoding)
                s1 += a
                s2 += b
            local, steps = sampler.take(len(rows))
            picked = rows[local]
            xs.append(encoding.encode_batch(batch.take(picked)))
            ys.append(y[picked])
            ss.append(steps)
        if std is None:
            std = standardise(s1, s2)
        for xb, yb in PassBatches.group(xs, ys, ss, encoding.width, block):
            yield std.apply(xb), yb
        done += block


def _fit(spec: TrainSpec, plan: TrainingPlan, split: Split, width: int, progress: ProgressFn | None) -> _Fitted:
    """DP-SGD over the in-memory training split (Poisson batches drawn over all its rows every step)."""
    loader = _PoissonBatches(torch.from_numpy(split.x), torch.from_numpy(split.y), plan.sample_rate,
                             plan.steps_per_epoch, torch.Generator())
    return _fit_loader(spec, plan, loader, width, progress)


def _fit_loader(spec: TrainSpec, plan: TrainingPlan, loader: DataLoader[tuple[torch.Tensor, ...]], width: int,
                progress: ProgressFn | None) -> _Fitted:
    from opacus import PrivacyEngine

    model = build_model(spec.model, width, spec.hidden_units, spec.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate)
    noise_gen = torch.Generator().manual_seed(_os_seed())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
        engine = PrivacyEngine(accountant="prv", secure_mode=False)
        gsm, dp_opt, criterion, _ = engine.make_private(
            module=model, optimizer=optimizer, criterion=nn.BCEWithLogitsLoss(), data_loader=loader,
            noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
            poisson_sampling=False, grad_sample_mode="ghost", noise_generator=noise_gen)
    # The mechanism's constants come from the plan, not from the private data's size.
    dp_opt.expected_batch_size = plan.batch_size
    dp_opt.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=plan.sample_rate))
    dp_opt.secure_mode = True  # floating-point mitigation of _generate_noise (see module docstring)
    gsm.train()
    done, every = 0, max(1, plan.steps // 100)
    with warnings.catch_warnings():
        # Inputs never require gradients here; torch notes that the full backward hooks fire regardless.
        warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
        for _ in range(plan.epochs):
            for xb, yb in loader:
                noise_gen.manual_seed(_os_seed())
                dp_opt.zero_grad()
                if xb.shape[0] == 0:  # an empty Poisson batch still takes a pure-noise step
                    for p in model.parameters():
                        p.grad = torch.zeros_like(p)
                else:
                    criterion(gsm(xb), yb).backward()
                dp_opt.step()
                done += 1
                if progress is not None and (done % every == 0 or done == plan.steps):
                    progress(done, plan.steps)
    executed = sum(int(s) for _, _, s in engine.accountant.history)
    if executed != plan.steps or any(
            (sig, q) != (plan.noise_multiplier, plan.sample_rate) for sig, q, _ in engine.accountant.history):
        raise RuntimeError("accountant history differs from the plan")
    eps = epsilon_for(plan.noise_multiplier, plan.sample_rate, executed, plan.delta, "prv")  # the steps taken
    gsm.cleanup()  # remove Opacus hooks and per-parameter attributes; the plain module remains
    model.eval()
    return _Fitted(model, executed, eps)


def _fold(model: nn.Module, std: Standardisation) -> None:
    """Fold the standardisation into the first layer, so the model reads the public encoding as it is."""
    layer = first_layer(model)
    with torch.no_grad():
        w, b = std.fold(layer.weight.detach().to(torch.float64).numpy(),
                        layer.bias.detach().to(torch.float64).numpy())
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the duration (process-wide; restored afterwards)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _logits(model: nn.Module, x: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.float32)
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            out[i:i + chunk] = model(torch.from_numpy(x[i:i + chunk])).numpy()
    return out


def _software() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "opacus", "opendp", "duckdb", "safetensors"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _train_in_memory(spec: TrainSpec, plan: TrainingPlan, dataset: Dataset, encoding: FeatureEncoding,
                     limits: ResourceLimits, sealer: Sealer | None, progress: ProgressFn | None,
                     stage: list[str]) -> tuple[_Fitted, Standardisation, MetricsRelease | None]:
    """Steps 2–6 with the encoded split held in memory (registered rows ≤ ``limits.stream_above_rows``)."""
    train_split, held_out = read_splits(dataset, encoding, limits, sealer)
    stage[0] = "standardise"
    std = dp_standardisation(train_split.x, encoding, plan.planned_train_rows, plan.standardisation_epsilon)
    train_split = Split(std.apply(train_split.x), train_split.y)
    stage[0] = "train"
    with _torch_threads(limits.torch_threads):
        fitted = _fit(spec, plan, train_split, encoding.width, progress)
    del train_split
    _fold(fitted.model, std)
    stage[0] = "metrics"
    metrics = None
    if plan.metrics_epsilon > 0:
        metrics = release_metrics(_logits(fitted.model, held_out.x), held_out.y, plan.metrics_epsilon)
    return fitted, std, metrics


def _train_streaming(spec: TrainSpec, plan: TrainingPlan, stream: TrainingStream, encoding: FeatureEncoding,
                     limits: ResourceLimits, progress: ProgressFn | None,
                     stage: list[str]) -> tuple[_Fitted, Standardisation, MetricsRelease | None]:
    """Steps 2–6 by passes over the engine (`sandbox.train.stream`): at most one pass's batches in memory."""
    released: list[Standardisation] = []

    def standardise(s1: np.ndarray, s2: np.ndarray) -> Standardisation:
        stage[0] = "standardise"
        std = release_standardisation(s1, s2, encoding, plan.planned_train_rows, plan.standardisation_epsilon)
        released.append(std)
        stage[0] = "train"
        return std

    batches = _streamed(stream, encoding, plan, limits.stream_buffer_rows, standardise)
    with _torch_threads(limits.torch_threads):
        fitted = _fit_loader(spec, plan, _StreamBatches(batches, plan.steps_per_epoch, encoding.width),
                             encoding.width, progress)
    batches.close()
    std = released[0]
    _fold(fitted.model, std)
    stage[0] = "metrics"
    metrics = None
    if plan.metrics_epsilon > 0:
        cells, hist = np.zeros(4, np.int64), None
        for batch, y, usable in stream.chunks(held_out=True):
            rows = np.flatnonzero(usable)
            c, h = held_out_counts(_logits(fitted.model, encoding.encode_batch(batch.take(rows))), y[rows])
            cells += c
            hist = h if hist is None else hist + h
        if hist is None:
            hist = held_out_counts(np.zeros(0, np.float32), np.zeros(0, np.float32))[1]
        metrics = release_counts(cells, hist, plan.metrics_epsilon)
    return fitted, std, metrics


def _stream_for(dataset: Dataset, encoding: FeatureEncoding, limits: ResourceLimits,
                path: Path) -> TrainingStream:
    """The pass reader: Spark's for a dataset declared ``engine: spark`` (`sandbox.train._spark_data`), else the
    locked DuckDB connection. Both serve the same passes (same split, same rows per side)."""
    if dataset.engine == "spark":
        from sandbox.train._spark_data import SparkTrainingStream

        return cast(TrainingStream, SparkTrainingStream(dataset, encoding, limits, path))
    return TrainingStream(dataset, encoding, limits, path)


def train(spec: TrainSpec, plan: TrainingPlan, dataset: Dataset, out_dir: Path | LocalStorage,
          progress: ProgressFn | None = None, *, limits: ResourceLimits | None = None,
          sealer: Sealer | None = None, model_key: str | None = None,
          hash_alg: HashAlg = "sha256") -> TrainingResult:
    """Train ``spec`` on ``dataset`` exactly as ``plan`` says; write weights and card into ``out_dir``: the
    model's area of the storage root (``models/<job id>``), written only through `catalog.storage.Storage`.

    ``plan`` must come from `plan_training` for this very spec (checked by hash); the gateway has charged
    ``plan.cost`` already. ``progress(done_steps, total_steps)`` is called about every 1 % of the steps; a
    `DomainError` raised from it aborts the run and propagates unchanged (any other exception becomes the
    scrubbed ``INTERNAL``). ``out_dir`` should be private to this job: on failure its model files are removed.
    ``sealer`` opens a dataset sealed at rest; with ``model_key`` as well, the weights and the card are written
    only sealed under that object id's data key (`catalog.sealed`); the digests stay over their plaintext.
    """
    if plan.spec_sha256 != spec.sha256(hash_alg):  # the plan names its spec with the home suite's hash
        raise DomainError(INVALID_REQUEST, "the training plan was made for a different spec")
    problems = structural_problems(spec, dataset)
    if problems:
        raise DomainError(INVALID_REQUEST, "the training spec cannot be trained on this dataset", problems)
    encoding = encoding_for(spec, dataset)
    store = out_dir if isinstance(out_dir, LocalStorage) else LocalStorage(Path(out_dir))
    out_dir = store.root
    weights_path = store.path_of(WEIGHTS_FILE)
    card_path = store.path_of(CARD_FILE)
    shared: Storage = store
    limits = limits or ResourceLimits()
    stage = ["read"]
    try:
        if limits.streams(plan.dataset_rows):
            with readable_path(Path(dataset.path), sealer) as path, \
                    _stream_for(dataset, encoding, limits, path) as stream:
                fitted, std, metrics = _train_streaming(spec, plan, stream, encoding, limits, progress, stage)
        else:
            fitted, std, metrics = _train_in_memory(spec, plan, dataset, encoding, limits, sealer, progress, stage)
        stage[0] = "write"
        out_dir.mkdir(parents=True, exist_ok=True)
        seal = sealer if sealer is not None and model_key is not None else None
        if seal is not None and model_key is not None:  # fsynced and renamed before the job's row commits
            weights_data = weights_bytes(tensors_of(fitted.model), spec.model, encoding.feature_names)
            shared.write_stream(WEIGHTS_FILE, seal.seal_chunks(model_key, weights_data))
        else:
            with shared.staged(WEIGHTS_FILE) as tmp:  # fsynced and renamed before the job's row commits
                save_weights(tensors_of(fitted.model), tmp, spec.model, encoding.feature_names)
            weights_data = weights_path.read_bytes()
        card = ModelCard(
            model=spec.model,
            hidden=spec.hidden_units,
            input_width=encoding.width,
            feature_names=tuple(encoding.feature_names),
            encoding=encoding,
            label=spec.label,
            label_domain=encoding.label_domain,
            positive_class=encoding.positive_class,
            privacy=PrivacyReport(
                unit=f"one row per privacy unit ({dataset.id_column}); at most one row per id is read",
                neighbouring="add or remove one privacy unit",
                mechanism="DP-SGD: Poisson-subsampled Gaussian mechanism on per-example clipped gradients "
                          "(Opacus ghost clipping)",
                accountant="prv",
                epsilon=plan.epsilon_requested,
                delta=plan.delta,
                epsilon_prv=fitted.epsilon_prv,
                epsilon_rdp=epsilon_for(plan.noise_multiplier, plan.sample_rate, fitted.steps, plan.delta, "rdp"),
                metrics_epsilon=plan.metrics_epsilon,
                standardisation_epsilon=plan.standardisation_epsilon if std.scaled_inputs else 0.0,
                standardised_inputs=std.scaled_inputs,
                cost=plan.cost,
                noise_multiplier=plan.noise_multiplier,
                sample_rate=plan.sample_rate,
                steps=fitted.steps,
                steps_per_epoch=plan.steps_per_epoch,
                max_grad_norm=plan.max_grad_norm,
                gradient_denominator=plan.batch_size,
                noise_source=NOISE_SOURCE,
                secure_mode=False,
                row_count="sample rate, steps and gradient denominator derive from the registered row count "
                          "(known to the sandbox); they reveal it to within about one batch",
            ),
            training=TrainingReport(
                epochs=spec.epochs, batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                optimizer="sgd", grad_sample_mode="ghost", poisson_sampling=True, seed=spec.seed,
                seed_use="parameter initialisation only (sampling and noise use OS entropy)",
            ),
            data=(DataSource(dataset=dataset.name, fingerprint=dataset.fingerprint, id_column=dataset.id_column,
                             split="train: ids whose salted md5 is not 0 mod 5; held out: the rest"),),
            metrics=metrics,
            weights=WeightsRef(file=WEIGHTS_FILE, format="safetensors",
                               sha256=fingerprint_digest(weights_data, hash_alg)),
            model_extraction_bound=extraction_bound(spec.model, encoding.width, spec.hidden_units),
            limits=LIMITS,
            warnings=plan.warnings,
            software=_software(),
        )
        card_bytes = card.canonical_json()
        if seal is not None and model_key is not None:
            shared.write_stream(CARD_FILE, seal.seal_chunks(model_key, card_bytes))
        else:
            shared.write_bytes(CARD_FILE, card_bytes)
        digest = fingerprint_digest(weights_data + card_bytes, hash_alg)
        return TrainingResult(weights_path=weights_path, card=card, output_digest=digest)
    except BaseException as e:
        for f in (weights_path, card_path):
            f.unlink(missing_ok=True)
        if isinstance(e, DomainError) or not isinstance(e, Exception):
            raise
        log.warning("training failed at stage %s (%s)", stage[0], type(e).__name__)
        raise DomainError(INTERNAL, "training failed", [{"stage": stage[0]}]) from None
