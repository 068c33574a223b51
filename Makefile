# Two commands: `make demo` (set up + run the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/ml-100k

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of PyTorch (a bare `torch` requirement would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	# MovieLens-100K ships inside the recbole wheel; --no-deps: we only read its data files
	$(BIN)/python -m pip install -q --no-deps recbole==1.2.1
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(BIN)/prismrec run --dataset ml-100k --out $(RUN)

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
