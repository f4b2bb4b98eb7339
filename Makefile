# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo-out
GATE := gate-out
BASELINE := reports/baselines/synthetic-tiny.json

.PHONY: demo test gate gate-run baseline install clean

$(BIN)/cmg-eval: setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/cmg-eval

test: install
	$(BIN)/python -m pytest -q tests

# Pretrains SRCID, DCID and CMCM (tiny preset, 2-3.5 minutes each) on the synthetic
# VGGSound-AVEL40k set and compares them with the oracle and a random-init DCID on every task.
METHODS := srcid dcid cmcm

demo: install
	$(BIN)/cmg-eval data synth --out $(DEMO)/data --size small --seed 0
	$(BIN)/cmg-eval ckpt init dcid --out $(DEMO)/random-dcid.pt --seed 0
	for method in $(METHODS); do \
		$(BIN)/cmg-eval pretrain $$method --data-root $(DEMO)/data --out $(DEMO)/$$method.pt --preset tiny || exit 1; \
	done
	$(BIN)/cmg-eval run all --ckpt oracle=$(DEMO)/data/oracle.pt --ckpt random=$(DEMO)/random-dcid.pt \
		--ckpt dcid=$(DEMO)/dcid.pt --ckpt cmcm=$(DEMO)/cmcm.pt \
		--ckpt srcid@layer1=$(DEMO)/srcid.pt --ckpt srcid=$(DEMO)/srcid.pt \
		--data-root $(DEMO)/data --out $(DEMO)/report --cache-dir $(DEMO)/cache

# The CI regression gate: evaluate the oracle and a random DCID on tiny synthetic data
# and compare against the committed baseline (exit 1 on a drop beyond the measured noise).
gate-run: install
	$(BIN)/cmg-eval data synth --out $(GATE)/data --size tiny --seed 0
	$(BIN)/cmg-eval ckpt init dcid --out $(GATE)/random-dcid.pt --seed 0
	$(BIN)/cmg-eval run all --ckpt oracle=$(GATE)/data/oracle.pt --ckpt random=$(GATE)/random-dcid.pt \
		--data-root $(GATE)/data --out $(GATE)/run --cache-dir $(GATE)/cache

gate: gate-run
	$(BIN)/cmg-eval compare $(BASELINE) $(GATE)/run/results.json

# Refresh the committed baseline (after an intended change of numbers).
baseline: gate-run
	cp $(GATE)/run/results.json $(BASELINE)

clean:
	rm -rf $(DEMO) $(GATE)
