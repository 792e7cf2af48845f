#!/usr/bin/env bash
# Real-data check of domain adaptation (issue #4), in a temporary copy of the repo (nothing written here):
# masked-LM adaptation of the default model on the Rotten Tomatoes training text, then sentiment fine-tuned
# from models/base and from models/adapted on the same seeded 80/10/10 split. Prints perplexity before/after,
# the fill-mask probes before/after and both test F1s. About 15 minutes on 2 CPU cores.
#
#   bench/domain_adapt_rt.sh [workdir]        (default: a fresh /tmp/domain-adapt-rt.XXXXXX, kept for inspection)
#   MLM_EPOCHS=3 bench/domain_adapt_rt.sh     (override mlm.epochs of the profile)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
workdir="${1:-$(mktemp -d /tmp/domain-adapt-rt.XXXXXX)}"
profile="$repo/bench/profiles/rt-polarity-adapt.yaml"
if [[ -n "${MLM_EPOCHS:-}" ]]; then
  profile="$workdir.profile.yaml"
  sed "s/^  epochs: 2$/  epochs: ${MLM_EPOCHS}/" "$repo/bench/profiles/rt-polarity-adapt.yaml" > "$profile"
fi
cd "$repo"
python bench/realdata.py "$profile" evaluate@sentiment evaluate@sentiment_adapted --workdir "$workdir" --keep
python - "$workdir" <<'PY'
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
adapt = json.loads((work / "metrics/domain_adapt/minilm.json").read_text())
adapt.update(json.loads((work / "timings/domain_adapt/minilm.json").read_text()))
print(f"\nMLM: {adapt['train_blocks']} train / {adapt['eval_blocks']} held-out blocks, {adapt['epochs']} epochs, "
      f"{adapt['train_runtime_s']:.0f} s; head initialised: {adapt['mlm_head_initialised']}")
print(f"perplexity before {adapt['perplexity_before']} -> after {adapt['perplexity_after']} "
      f"({adapt['masked_eval_tokens']} masked held-out tokens, one fixed masking)")
for probe in json.loads((work / "plots/fill_mask/minilm.json").read_text())["probes"]:
    print(f"  {probe['sentence']}")
    for when in ("before", "after"):
        print(f"    {when:6s} " + ", ".join(f"{t['token']} ({t['score']:.3f})" for t in probe[when]))
for run in ("sentiment", "sentiment_adapted"):
    test = json.loads((work / f"metrics/{run}.json").read_text())
    train = json.loads((work / f"metrics/train/{run}.json").read_text())
    train.update(json.loads((work / f"timings/train/{run}.json").read_text()))
    print(f"{run:18s} init={train['init']:8s} test f1={test['f1']:.4f} accuracy={test['accuracy']:.4f} "
          f"({test['test_examples']} test examples, train {train['train_runtime_s']:.0f} s)")
PY
