#!/usr/bin/env bash
# CoNLL-2003 English NER on the real files (../shared/data/conll2003: eng.train / eng.testa / eng.testb, IOB1),
# the default offline model (all-MiniLM-L6-v2), in a temporary copy of the repo (nothing is written here).
#
#   bench/conll_recipe.sh book      # the book's plain recipe: 1 epoch, lr 2e-5, batch 16   (issue bar: F1 >= 0.73)
#   bench/conll_recipe.sh recipe    # the small-model recipe: 3 epochs, lr 1e-4, warmup 250  (issue bar: F1 >= 0.85)
#   bench/conll_recipe.sh both
#
# Each run holds /tmp/cpu-heavy.lock (one heavy job at a time on a shared machine), prints the train summary
# (train_samples_per_second, train_runtime_s) and the test metrics (entity-level f1/precision/recall), and keeps
# a log in $LOG_DIR (default /tmp). Set KEEP=1 to keep the working copy (fine-tuned model in models/finetuned/ner).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -f .venv/bin/activate ]]; then source .venv/bin/activate; fi  # python + dvc
LOG_DIR=${LOG_DIR:-/tmp}
which=${1:-both}

run() {
    local name=$1 workdir="${LOG_DIR}/conll-${1}-work" log="${LOG_DIR}/conll-${1}.log"
    local keep=()
    [[ -n "${KEEP:-}" ]] && keep=(--keep)
    rm -rf "$workdir"
    echo "== conll2003 ${name}: bench/profiles/conll2003-${name}.yaml (progress: tail -f ${log})"
    if ! flock /tmp/cpu-heavy.lock python bench/realdata.py "bench/profiles/conll2003-${name}.yaml" evaluate@ner \
            --workdir "$workdir" "${keep[@]}" >"$log" 2>&1; then
        tail -n 5 "$log" >&2
        echo "conll2003 ${name}: failed, see ${log}" >&2
        return 1
    fi
    grep -E "^(machine|dvc repro)|^metrics/(train/)?ner\.json|words beyond" "$log"
}

case "$which" in
    book|recipe) run "$which" ;;
    both) run book; run recipe ;;
    *) echo "usage: $0 [book|recipe|both]" >&2; exit 2 ;;
esac
