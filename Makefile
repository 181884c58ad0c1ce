# deepscope developer commands. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup demo test bench docs clean

$(BIN)/deepscope: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned in constraints.txt: the CPU wheel, never the CUDA build
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(BIN)/deepscope

setup: $(BIN)/deepscope

demo: setup
	$(BIN)/deepscope train configs/digits.yaml

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

docs: setup
	$(BIN)/python -m mkdocs build --strict -d site

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) runs site test-artefacts .pytest_cache
