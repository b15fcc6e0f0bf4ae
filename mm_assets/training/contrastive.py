"""Contrastive fine-tuning (CLIP's objective: an N×N image-text similarity matrix per batch,
symmetric cross-entropy, learnable temperature), deterministic for a given seed and data.

Where images carry labels, pairs with the same label are targets for each other (soft targets
spread over them) instead of being pushed apart as false negatives.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from mm_assets.config import FineTuneConfig
from mm_assets.encoders.resolve import LINEAGE_FILE, ResolvedModel, weights_hash
from mm_assets.hashing import short_hash


@dataclass(frozen=True)
class TrainingPair:
    file_id: str
    pixels: np.ndarray  # preprocessed CHW float32
    caption: str
    label: str | None = None  # pairs sharing a label are positives for each other, not negatives


@dataclass(frozen=True)
class TrainingReport:
    model_dir: Path
    revision: str  # weights hash of the result
    data_fingerprint: str
    steps: int
    losses: list[float]  # mean loss per epoch
    seconds: float

    def lineage(self, base: ResolvedModel, config: FineTuneConfig) -> dict:
        return {
            "base_model_id": base.model_id,
            "base_revision": base.revision,
            "data_fingerprint": self.data_fingerprint,
            "hyperparameters": asdict(config),
            "steps": self.steps,
            "loss_curve": [round(x, 5) for x in self.losses],
            "wall_seconds": round(self.seconds, 2),
            "revision": self.revision,
        }


def data_fingerprint(pairs: list[TrainingPair]) -> str:
    return short_hash(sorted((p.file_id, p.caption, p.label or "") for p in pairs), 16)


def fine_tune(
    base: ResolvedModel,
    pairs: list[TrainingPair],
    config: FineTuneConfig,
    out_dir: Path,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[], None] = lambda: None,
) -> TrainingReport:
    """Train from ``base`` on ``pairs`` and save a complete model directory (safetensors and its
    lineage) at ``out_dir``."""
    if len(pairs) < 2:
        raise ValueError(f"fine-tuning needs at least 2 captioned training images, found {len(pairs)}")
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = CLIPModel.from_pretrained(base.local_dir, use_safetensors=True, dtype=torch.float32)
    model.train()
    tokenizer = AutoTokenizer.from_pretrained(base.local_dir)
    if config.freeze_text:
        for module in (model.text_model, model.text_projection):
            module.requires_grad_(False)
    if config.freeze_vision:
        for module in (model.vision_model, model.visual_projection):
            module.requires_grad_(False)
    model.logit_scale.requires_grad_(config.learn_temperature)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)

    ordered = sorted(pairs, key=lambda p: p.file_id)  # input order must not change the result
    pixels = torch.from_numpy(np.stack([p.pixels for p in ordered]))
    tokens = tokenizer(
        [p.caption for p in ordered],
        padding=True,
        truncation=True,
        max_length=model.config.text_config.max_position_embeddings,
        return_tensors="pt",
    )
    label_ids = {key: i for i, key in enumerate(sorted({p.label or f"pair:{p.file_id}" for p in ordered}))}
    labels = torch.tensor([label_ids[p.label or f"pair:{p.file_id}"] for p in ordered])
    n, losses, steps = len(ordered), [], 0
    batch_size = min(config.batch_size, n)
    steps_per_epoch = max(1, (n - 1 if n % batch_size == 1 else n + batch_size - 1) // batch_size)
    scheduler = _warmup_cosine(optimizer, total_steps=config.epochs * steps_per_epoch)
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        epoch_losses = []
        # drop a last batch of one: a 1×1 similarity matrix has nothing to contrast
        for i in range(0, n - 1 if n % batch_size == 1 else n, batch_size):
            idx = order[i : i + batch_size]
            out = model(
                input_ids=tokens["input_ids"][idx],
                attention_mask=tokens["attention_mask"][idx],
                pixel_values=pixels[idx],
            )
            same = labels[idx][:, None] == labels[idx][None, :]
            targets = same.float() / same.sum(dim=1, keepdim=True)
            loss = (
                torch.nn.functional.cross_entropy(out.logits_per_image, targets)
                + torch.nn.functional.cross_entropy(out.logits_per_text, targets.T)
            ) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # CLIP clamps the temperature so logits stay <= 100
                model.logit_scale.clamp_(0, np.log(100))
            epoch_losses.append(loss.item())
            steps += 1
        losses.append(float(np.mean(epoch_losses)))
        log(f"epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}")
        on_epoch()
    staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    _save_model(model, tokenizer, base.local_dir, staging)
    report = TrainingReport(
        out_dir, weights_hash(staging), data_fingerprint(pairs), steps, losses, time.perf_counter() - start
    )
    (staging / LINEAGE_FILE).write_text(json.dumps(report.lineage(base, config), indent=1, sort_keys=True))
    _swap_into_place(staging, out_dir)
    return report


def _warmup_cosine(optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5% of steps, then cosine decay to zero (CLIP's schedule)."""
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, total_steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _save_model(model: CLIPModel, tokenizer, base_dir: Path, directory: Path) -> None:
    model.eval()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    AutoImageProcessor.from_pretrained(base_dir).save_pretrained(directory)


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by a complete directory written beside it: a reader never loads half a
    model, or a model without its lineage."""
    old = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)
