# Two entry points for a newcomer: `make demo` (the main job) and `make test`.
# Each creates the virtual env and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench reliability clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel setuptools
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m stream.cli demo

test: $(STAMP)
	$(PY) -m pytest

# the accuracy benchmark (hours: `hiertcn bench accuracy --plan` estimates it first; see
# benchmarks/accuracy.md), then training speed and memory: benchmarks/results/. The
# accuracy run's finished jobs go to a journal in the checkout: commit it, and `make bench`
# in a later clone goes on where this one stopped
bench: $(STAMP)
	$(PY) -m hiertcn bench accuracy --journal benchmarks/results/accuracy-journal
	$(PY) -m hiertcn bench training

# the seven fault scenarios at full size (about 25 minutes): benchmarks/results/reliability.json
reliability: $(STAMP)
	$(PY) -m benchmarks.reliability

clean:
	rm -rf .cache runs artifacts .kafka
