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

.PHONY: demo test lint bench install synth clean differential constraints property

# Exactly the versions in constraints.txt (what the tests last passed with); `make constraints` rewrites it.
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,infra]'
	touch $(STAMP)

# After changing pyproject's dependencies, from a venv holding only them (`make clean install` first).
constraints: $(STAMP)
	{ sed -n '/^# /p' constraints.txt; $(BIN)/pip freeze --all --exclude-editable | grep -iv '^setuptools=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# The CDK command-line tool, at the version package-lock.json pins.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

demo: $(STAMP)
	$(BIN)/stepwise demo workflows/

# Types checked before the tests (pyproject's [tool.mypy]): shared/, the functions, the CLI and the CDK app.
test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared functions stepwise infra
	$(BIN)/pytest -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions stepwise infra

# The differential run, larger than CI's: generated workflows on the local stack against the reference interpreter.
differential: $(STAMP)
	DIFF_EXAMPLES=$${DIFF_EXAMPLES:-150} DIFF_SEED=$${DIFF_SEED:-20261130} DIFF_SHRINK=1 \
		$(BIN)/pytest -p no:xdist -q tests/differential

# The validate-means-runs property test, larger than CI's 16 generated examples (PROPERTY_SEED picks other files; no shrink).
property: $(STAMP)
	PROPERTY_SLOW_EXAMPLES=$${PROPERTY_SLOW_EXAMPLES:-100} $(BIN)/pytest -p no:xdist -q -m slow tests/property

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The CloudFormation template `cdk deploy` would deploy, in cdk.out/ (offline: no AWS account needed).
# The examples send email and SMS, so the stack needs a From address and an SMS origination (cdk.json leaves both
# empty: a deploy must name real ones). These example values only make the template; override them for a deploy
# preview: make synth EMAIL_FROM=news@your-domain SMS_ORIGINATION=pool-<32 hex> (or an ARN).
EMAIL_FROM ?= marketing@example.com
SMS_ORIGINATION ?= pool-0123456789abcdef0123456789abcdef
synth: $(STAMP) $(NODE_STAMP)
	$(CDK) synth --quiet -c email_from=$(EMAIL_FROM) -c sms_origination=$(SMS_ORIGINATION)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules cdk.out build

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml; docs/mutation.md has the last score and
# the survivors). Not in CI: too slow for 2 cores. MUTATE narrows the run, e.g. MUTATE='shared.workflow.conditions*';
# the run is kept in mutants/ (`mutmut show NAME` prints a mutant's diff; a second run retests only what changed).
.PHONY: mutation
mutation: $(STAMP)
	$(BIN)/mutmut run --max-children $${MUTATION_CHILDREN:-2} $(MUTATE)
	$(BIN)/mutmut results

# mutmut runs a mutant against the tests its stats pass saw reaching the mutated function only, and that map misses
# some pairs (a test of start_workflow's `at` was not mapped to `_start_workflow`): a survivor may be a false one.
# This runs every survivor of the last run against the whole test selection ([tool.mutmut]), as mutmut's trampoline
# reads MUTANT_UNDER_TEST, and prints each verdict (after checking the selection passes unmutated). It changes
# nothing in mutmut's state.
.PHONY: mutation-recheck
mutation-recheck: $(STAMP)
	@tests="$$($(BIN)/python -c 'import tomllib; c = tomllib.load(open("pyproject.toml", "rb"))["tool"]["mutmut"]; print(" ".join(c.get("pytest_add_cli_args_test_selection", ["tests/unit"])))')"; \
	(cd mutants && ../$(BIN)/python -m pytest -p no:xdist -p no:cacheprovider -x -q $$tests > /dev/null 2>&1) \
	  || { echo "the selection fails without a mutant in mutants/: nothing to recheck against"; exit 1; }; \
	for m in $$($(BIN)/mutmut results 2>/dev/null | awk '$$NF == "survived" {sub(/:$$/, "", $$1); print $$1}'); do \
	  if (cd mutants && MUTANT_UNDER_TEST=$$m ../$(BIN)/python -m pytest -p no:xdist -p no:cacheprovider -x -q $$tests \
	      > /dev/null 2>&1); then echo "survived $$m"; else echo "killed $$m"; fi; \
	done
