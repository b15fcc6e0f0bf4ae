"""fine_tuned/<encoder>: contrastive fine-tuning of a configured base encoder, with lineage."""

from pathlib import Path

import dagster as dg

from mm_assets.assets.common import OWNERS, Storage, tags
from mm_assets.config import EncoderConfig, Settings
from mm_assets.encoders.identity import code_version
from mm_assets.encoders.resolve import resolve_model
from mm_assets.progress import Progress
from mm_assets.store.tables import RAW_FILES, upgrade


def fine_tuned_asset_key(encoder: EncoderConfig) -> dg.AssetKey:
    return dg.AssetKey(["fine_tuned", encoder.name])


def build_fine_tuned_asset(settings: Settings, encoder: EncoderConfig, raw_files_asset):
    ft = encoder.fine_tune
    base_config = settings.encoder(ft.base)

    @dg.asset(
        key=fine_tuned_asset_key(encoder),
        group_name="embedding",
        owners=OWNERS,
        tags=tags("train"),
        kinds={"pytorch", "safetensors"},
        deps=[raw_files_asset],
        code_version=code_version(encoder),
        pool="gpu",
        description=f"{encoder.name}: {ft.base} fine-tuned contrastively on the captioned training split "
        f"({ft.epochs} epochs, lr {ft.learning_rate}, seed {ft.seed}).",
    )
    def fine_tuned(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        # Imported when the step runs, not when the definitions load (see mm_assets/assets/__init__.py).
        from mm_assets.encoders.image_preprocessing import ImagePreprocessing
        from mm_assets.training.contrastive import fine_tune
        from mm_assets.training.pairs import training_pairs

        layout = storage.layout
        base = resolve_model(base_config.model, base_config.revision)
        raw_files = layout.store.read_all(layout.store.shard_dir(RAW_FILES))
        pairs, skipped = training_pairs(
            upgrade(raw_files, RAW_FILES) if raw_files is not None else None,
            settings.eval_test_percent,
            ImagePreprocessing.from_model_dir(base.local_dir),
            settings.max_image_pixels,
        )
        context.log.info(f"training on {len(pairs)} captioned images ({len(skipped)} unreadable, skipped)")
        out_dir = Path(encoder.model)
        with Progress(ft.epochs, f"train {encoder.name}", unit="epoch") as progress:
            report = fine_tune(base, pairs, ft, out_dir, context.log.info, on_epoch=progress)
        lineage = report.lineage(base, ft)
        return dg.MaterializeResult(
            metadata={
                "model_dir": dg.MetadataValue.path(str(out_dir)),
                "training_pairs": len(pairs),
                "skipped": skipped[:20],
                "final_loss": report.losses[-1],
                "first_loss": report.losses[0],
                **lineage,
            }
        )

    return fine_tuned
