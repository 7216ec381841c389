# The README's commands. Each target sets itself up from nothing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := node_modules/.bin/cdk

# Quiet, offline-safe CDK: no telemetry, no instance-metadata lookups, no end-of-life banner for node 20.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export AWS_EC2_METADATA_DISABLED := true

.PHONY: demo test lint bench install synth clean differential

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,infra]'
	touch $(STAMP)

# The CDK command-line tool, at the version package-lock.json pins.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

demo: $(STAMP)
	$(BIN)/stepwise demo workflows/

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The differential run, larger than CI's: generated workflows on the local stack against the reference interpreter.
differential: $(STAMP)
	DIFF_EXAMPLES=$${DIFF_EXAMPLES:-150} DIFF_SEED=$${DIFF_SEED:-20261130} DIFF_SHRINK=1 \
		$(BIN)/pytest -p no:xdist -q tests/differential

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The CloudFormation template `cdk deploy` would deploy, in cdk.out/ (offline: no AWS account needed).
synth: $(STAMP) $(NODE_STAMP)
	$(CDK) synth --quiet

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules cdk.out build
