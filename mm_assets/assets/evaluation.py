"""retrieval_eval: recall@K, MRR and nDCG@10 per encoder and task, compared side by side."""

import dagster as dg

from mm_assets.assets.common import OWNERS, Storage, tags
from mm_assets.config import Settings
from mm_assets.evaluation.history import record_results
from mm_assets.evaluation.retrieval import (
    EVAL_VERSION,
    comparison_markdown,
    evaluate_encoder_table,
    rare_token_results,
)
from mm_assets.search.calibrated import write_calibrations


def build_retrieval_eval_asset(settings: Settings, vector_tables_asset):
    @dg.asset(
        group_name="serving",
        owners=OWNERS,
        tags=tags("evaluate"),
        kinds={"duckdb"},
        deps=[vector_tables_asset],
        code_version=f"{EVAL_VERSION}-{settings.eval_test_percent}",
        description="Cross-modal retrieval quality of every configured encoder on the held-out split of "
        "captioned images (fixed by content hash), and the score calibration mixed-modality search uses, "
        "fitted on the training split; for fused (item) encoders, items like this one against image and caption "
        "alone, with the image weight fitted on the training split; history in evaluations.duckdb.",
    )
    def retrieval_eval(context: dg.AssetExecutionContext, storage: Storage) -> dg.MaterializeResult:
        # Imported when the step runs, not when the definitions load (see mm_assets/assets/__init__.py).
        from mm_assets.encoders.load import recorded_encoder
        from mm_assets.evaluation.items import item_results
        from mm_assets.search.query import Searcher

        layout = storage.layout
        # One reader of the generation: its served vectors, and the searcher the rare-word queries ask.
        with Searcher(layout.db_path) as searcher:
            served = searcher.served
            current = [t for t in served.tables() if t.is_current]
            tables = [t for t in current if {"image", "text"} <= set(t.metadata["modalities"])]
            results, calibrations = [], {}
            for table in tables:
                if "fusion" in table.metadata:  # items: recommendation against image and caption alone
                    of = next((t for t in current if t.encoder_key == table.metadata["fusion"]["of"]), None)
                    results += item_results(served, table, of, recorded_encoder(table), settings.eval_test_percent)
                    continue
                found, calibrations[table.encoder_key] = evaluate_encoder_table(
                    served, table, recorded_encoder(table), settings.eval_test_percent
                )
                results += found + rare_token_results(searcher, table)
        if not results:
            context.log.warning("no captioned images in the test split: add sidecar captions or captions.csv")
        record_results(layout.evaluations, results, {t.encoder_key: t.metadata for t in tables}, context.run_id)
        # What search over all modalities calibrates its scores with (search/calibrated.py).
        write_calibrations(layout.calibrations, calibrations, context.run_id)
        scores = {
            f"{r['encoder']}/{r['task']}/{m}": float(r[m])
            for r in results
            for m in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "chance@1", "n_queries", "images@10")
            if m in r
        }
        return dg.MaterializeResult(
            metadata={
                "comparison": dg.MetadataValue.md(comparison_markdown(results) if results else "_no labelled data_"),
                "encoders": [t.encoder_key for t in tables],
                "n_results": len(results),
                **scores,
            }
        )

    return retrieval_eval
