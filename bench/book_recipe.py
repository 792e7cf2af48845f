"""The book's plain fine-tuning recipe, written out as a notebook user would: the baseline of bench/book_vs_pipeline.py.

    python bench/book_recipe.py --data <dir with train/validation/test.parquet + labels.json> --model <model dir>

Tokenize with truncation inside the script, pad each batch dynamically (DataCollatorWithPadding), Trainer with
its defaults apart from the recipe (lr, batch size, weight decay, epochs, evaluation once per epoch), then score
the test split. Nothing from `stages/` is used, so the comparison is against code users write today.
Prints one JSON line with the figures; --predictions writes the predicted test labels.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict
from sklearn.metrics import f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--predictions", type=Path, help="write the predicted test labels here (JSON list, in order)")
    args = parser.parse_args()

    started = time.perf_counter()
    labels = json.loads((args.data / "labels.json").read_text())["labels"]
    label2id = {label: i for i, label in enumerate(labels)}
    frames = {split: pd.read_parquet(args.data / f"{split}.parquet") for split in ("train", "validation", "test")}
    raw = DatasetDict({split: Dataset.from_dict({"text": frame["text"].tolist(),
                                                 "label": [label2id[x] for x in frame["label"]]})
                       for split, frame in frames.items()})

    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    encoded = raw.map(lambda batch: tokenizer(batch["text"], truncation=True), batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(args.model), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)

    def compute_metrics(prediction):
        predicted = np.argmax(prediction.predictions, axis=-1)
        return {"f1": f1_score(prediction.label_ids, predicted, average="weighted")}

    with tempfile.TemporaryDirectory(prefix="book-recipe-") as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=args.epochs,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            weight_decay=args.weight_decay,
            eval_strategy="epoch",
            logging_steps=max(1, len(encoded["train"]) // args.batch_size),
            seed=args.seed,
            report_to="none",
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=encoded["train"],
                          eval_dataset=encoded["validation"], data_collator=DataCollatorWithPadding(tokenizer),
                          processing_class=tokenizer, compute_metrics=compute_metrics)
        output = trainer.train()
        test = trainer.predict(encoded["test"])
    predicted = np.argmax(test.predictions, axis=-1)
    positive = label2id["pos"] if "pos" in label2id else len(labels) - 1
    figures = {
        "train_samples_per_second": round(output.metrics["train_samples_per_second"], 3),
        "train_runtime_s": round(output.metrics["train_runtime"], 1),
        "train_samples": len(encoded["train"]),
        "test_f1": round(float(f1_score(test.label_ids, predicted, pos_label=positive)), 4),
        "test_accuracy": round(float(np.mean(predicted == test.label_ids)), 4),
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.predictions:  # for the paired verdict against the pipeline on the same test examples
        args.predictions.write_text(json.dumps([labels[i] for i in predicted]))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
