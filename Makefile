# Entry points for a fresh machine: `make demo`, `make paper-tables` and `make test`.
# DEMO=DIR puts the data, checkpoints, embedding cache and reports elsewhere (default demo-out).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO ?= demo-out
GATE := gate-out
BASELINE := reports/baselines/synthetic-tiny.json

.PHONY: demo paper-tables test gate gate-run baseline install clean

$(BIN)/cmg-eval: setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/cmg-eval

test: install
	$(BIN)/python -m pytest -q --durations=10 tests

# Checkpoints METHOD+seedN.pt: METHOD pretrained at the tiny preset with seed N on the small synthetic
# VGGSound-AVEL40k. A run writes METHOD+seedN.part (resumable) and renames it when finished, so a
# finished checkpoint is never retrained and an interrupted one continues where it stopped.
# One torch thread per pretraining: CPU results depend on the thread count (the order of float
# reductions), so a pinned count makes a checkpoint the same on any core count of one processor type;
# PRETRAIN_JOBS pretrainings run side by side.
PRETRAIN_THREADS ?= 1
PRETRAIN_JOBS ?= 2
DATA := $(DEMO)/data
CKPT := $(DEMO)/ckpt
SEEDS := 43 44 45
DEMO_METHODS := srcid dcid cmcm
PAPER_METHODS := dcid cmcm dcid-fsq dcid-rvq2 dcid-rvq3 dcid-rvq4 srcid
DEMO_CKPTS := $(foreach m,$(DEMO_METHODS),$(CKPT)/$(m)+seed43.pt)
PAPER_CKPTS := $(foreach m,$(PAPER_METHODS),$(foreach s,$(SEEDS),$(CKPT)/$(m)+seed$(s).pt))
label = $(notdir $(basename $(1)))

$(DATA)/synth.json: | $(BIN)/cmg-eval
	$(BIN)/cmg-eval data synth --out $(DATA) --size small --seed 0

$(DEMO)/random-dcid.pt: | $(BIN)/cmg-eval
	$(BIN)/cmg-eval ckpt init dcid --out $@ --seed 0

$(CKPT)/%.pt: $(DATA)/synth.json | $(BIN)/cmg-eval
	OMP_NUM_THREADS=$(PRETRAIN_THREADS) $(BIN)/cmg-eval pretrain $(firstword $(subst +seed, ,$*)) --data-root $(DATA) --out $(CKPT)/$*.part \
		--preset tiny --set seed=$(lastword $(subst +seed, ,$*))
	mv $(CKPT)/$*.part $@

# Pretrains SRCID, DCID and CMCM (tiny preset, seed 43, 2-4 minutes each) and compares them with the
# oracle and a random-init DCID on every task, retrieval included.
demo: install $(DEMO)/random-dcid.pt
	$(MAKE) -j$(PRETRAIN_JOBS) $(DEMO_CKPTS)
	rm -rf $(DEMO)/report
	$(BIN)/cmg-eval run all --ckpt oracle=$(DATA)/oracle.pt --ckpt random=$(DEMO)/random-dcid.pt \
		--ckpt dcid=$(CKPT)/dcid+seed43.pt --ckpt cmcm=$(CKPT)/cmcm+seed43.pt \
		--ckpt srcid@layer1=$(CKPT)/srcid+seed43.pt --ckpt srcid=$(CKPT)/srcid+seed43.pt \
		--data-root $(DATA) --out $(DEMO)/report --cache-dir $(DEMO)/cache

# Tables I-III: every method of the papers' Tables I and II that cmg-eval pretrains, 3 pretraining
# seeds each (21 checkpoints; the demo's 3 are reused), evaluated on every task, rows grouped by
# pretraining seed in $(DEMO)/paper/paper-tables.md. With the checkpoints present only the run is redone.
# No item bootstrap: the spread that matters here is across pretraining seeds, and paired tests of the best
# of 26 rows against each other one would cost hours of rescoring.
paper-tables: install $(DEMO)/random-dcid.pt
	$(MAKE) -j$(PRETRAIN_JOBS) $(PAPER_CKPTS)
	rm -rf $(DEMO)/paper
	$(BIN)/cmg-eval run all --ckpt oracle=$(DATA)/oracle.pt --ckpt random=$(DEMO)/random-dcid.pt \
		$(foreach c,$(PAPER_CKPTS),--ckpt $(call label,$(c))=$(c)) \
		$(foreach s,$(SEEDS),--ckpt srcid+seed$(s)@layer1=$(CKPT)/srcid+seed$(s).pt) \
		--data-root $(DATA) --out $(DEMO)/paper --cache-dir $(DEMO)/cache --bootstrap 0
	$(BIN)/cmg-eval paper-tables $(DEMO)/paper

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
