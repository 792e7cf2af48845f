# The two commands a newcomer needs:
#   make repro   create .venv (pinned install), then run the default offline pipeline (dvc repro)
#                (make repro PROFILE=book: the book's configuration, with the network and a GPU)
#   make test    create .venv (pinned install), then run the test suite
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: repro test lint clean-venv

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (this project needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# make repro PROFILE=book merges profiles/book.yaml into params.yaml first (see `git diff params.yaml`).
repro: $(STAMP)
	. $(VENV)/bin/activate && $(if $(PROFILE),python -m stages.cli.profiles profiles/$(PROFILE).yaml &&) dvc repro

test: $(STAMP)
	. $(VENV)/bin/activate && python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(VENV)/bin/ruff check stages tests bench
	$(VENV)/bin/mypy stages

clean-venv:
	rm -rf $(VENV)
