# Two commands do all set-up on a fresh machine:
#   make book   - build the HTML book offline into _build/html (the main job)
#   make test   - ruff, unit tests, notebook outputs (nbval) and jupytext pair checks
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: book test notebooks bench clean

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints-cpu.txt -e '.[book,test]'
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going

test: $(STAMP)
	$(BIN)/ruff check ris_lite tests benchmarks book
	$(BIN)/pytest tests
	$(BIN)/pytest --nbval book/

# Re-make every .ipynb from its .py pair and execute it (after editing a chapter).
notebooks: $(STAMP)
	for f in book/*.py; do $(BIN)/jupytext --to ipynb --execute "$$f" || exit 1; done

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loss_share.py
	$(BIN)/python benchmarks/bench_train_speed.py

clean:
	rm -rf _build
