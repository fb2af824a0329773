# Every target creates .venv from python3 and installs the project when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: venv demo test test-slow bench paper-cpu paper clean

venv: $(STAMP)

# The hf extra (transformers, torch==2.13.0: a CPU wheel already on this machine's disk, ~30 s) is for
# tests/interop/test_hf.py; pyproject.toml pins torch so that pip never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,hf]'
	touch $(STAMP)

demo: $(STAMP)
	bash experiments/demo.sh $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -x -p no:cacheprovider

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

# The paper's experiments (experiments/configs/paper.py), each resuming where it stopped; docs/results.md is
# reassembled after each. paper-cpu: every experiment at cpu size (under 2 hours on 2 cores); paper: at
# accelerator size (a GPU or TPU), into results_accel/ and docs/results_accel.md.
EXPERIMENTS := rank blocks ripple censor dissent_qa locate unlearning capacity

paper-cpu: $(STAMP)
	@for e in $(EXPERIMENTS); do \
	  $(BIN)/python -m experiments.paper --config=experiments/configs/paper.py:$$e,cpu --output=results \
	    --docs=docs/results.md || exit $$?; done

paper: $(STAMP)
	@for e in $(EXPERIMENTS); do \
	  $(BIN)/python -m experiments.paper --config=experiments/configs/paper.py:$$e,accel --output=results_accel \
	    --docs=docs/results_accel.md || exit $$?; done

# One suite: make bench SUITE=edit (GNU make takes no --suite=...; this is `experiments.bench --suite=edit`).
SUITE ?= all
bench: $(STAMP)
	$(BIN)/python -m experiments.bench --suite=$(SUITE) --output=runs/bench.json

clean:
	rm -rf runs build *.egg-info
