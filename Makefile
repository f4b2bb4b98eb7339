# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo-out

.PHONY: demo test install clean

$(BIN)/cmg-eval: setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/cmg-eval

test: install
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/cmg-eval data synth --out $(DEMO)/data --size small --seed 0
	$(BIN)/cmg-eval ckpt init dcid --out $(DEMO)/random-dcid.pt --seed 0
	$(BIN)/cmg-eval run ave --ckpt oracle=$(DEMO)/data/oracle.pt --ckpt random=$(DEMO)/random-dcid.pt \
		--data-root $(DEMO)/data --out $(DEMO)/report --cache-dir $(DEMO)/cache

clean:
	rm -rf $(DEMO)
