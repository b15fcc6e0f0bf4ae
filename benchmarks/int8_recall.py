"""Benchmark (issue 17): int8 judged by retrieval, not by cosine alone. Runs `mm-assets demo` (its
fine-tuned model), then embeds the demo corpus again with the untrained and the fine-tuned model, each
in PyTorch fp32 and in int8 (ONNX Runtime), and prints `retrieval_eval`'s recall@1 side by side with
int8's difference to fp32 (the bar: within 0.01).

    PYTHONPATH=. python benchmarks/int8_recall.py [--epochs 40]
"""

from __future__ import annotations

import argparse
import json

import yaml

from benchmarks.embed_photos import MM_ASSETS, timed
from benchmarks.scratch import scratch_dir


def mm_assets(*args: str) -> str:
    return timed([MM_ASSETS, *args])[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    work = scratch_dir("mm-int8-")
    demo = work / "demo"
    out = mm_assets("--home", str(demo), "demo", "--epochs", str(args.epochs))
    print("the demo as a user runs it (default settings):")
    print("\n".join(line for line in out.splitlines() if line.startswith(("|", "done in"))), "\n")
    models = {"untrained": demo / "models" / "demo_base", "tuned": demo / "models" / "demo_tuned"}
    encoders = [
        {"name": f"{name}_{label}", "model": str(path), "batch_size": 64, **options}
        for name, path in models.items()
        for label, options in (("fp32", {"dtype": "float32", "runtime": "torch"}), ("int8", {"dtype": "int8"}))
    ]
    config = work / "compare.yaml"
    config.write_text(
        yaml.safe_dump({"home": str(work / "compare"), "sources": [str(demo / "corpus")], "encoders": encoders})
    )
    mm_assets("--config", str(config), "run")
    results = json.loads(mm_assets("--config", str(config), "eval", "--json"))
    recall = {(r["task"], r["encoder"]): r["recall@1"] for r in results}
    print("| task | encoder | recall@1 fp32 (PyTorch) | recall@1 int8 (ONNX Runtime) | int8 - fp32 |")
    print("|---|---|---|---|---|")
    for task in sorted({task for task, _ in recall}):
        for model in models:
            fp32, int8 = recall[(task, f"{model}_fp32")], recall[(task, f"{model}_int8")]
            print(f"| {task} | {model} | {fp32:.3f} | {int8:.3f} | {int8 - fp32:+.3f} |")


if __name__ == "__main__":
    main()
