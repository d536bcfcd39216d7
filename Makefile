# The README's commands. `make train` and `make test` set everything up from requirements.lock first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
SOURCE ?=
LIBRARY ?=
ARGS   ?=
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: setup train score stack-up stack-down test test-fast lint lock clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "$$(grep "^uv==" requirements.lock)"  # the lock's uv installs the rest
	$(UV) pip install --python $(PY) --quiet --compile-bytecode -r requirements.lock  # .pyc now: start-up need not compile
	touch $@

train: setup  ## run train-flow with defaults; SOURCE=<folder, archive, URL or s3://> for another dataset
	$(PY) typer_cli.py train $(if $(SOURCE),--source "$(SOURCE)") $(ARGS)

score: setup  ## run batch-score-flow over LIBRARY=<folder or s3://bucket/prefix> with the champion
	$(if $(LIBRARY),,$(error set LIBRARY=<music folder or s3://bucket/prefix>))
	$(PY) typer_cli.py score --library "$(LIBRARY)" $(ARGS)

stack-up: setup  ## the team stack without Docker: PostgreSQL, S3 (SeaweedFS), MLflow and Prefect servers, a worker; data in .stack
	$(PY) -m infra.stack up $(ARGS)

stack-down:  ## stop the stack; its data stays (ARGS=--purge deletes it)
	$(PY) -m infra.stack down $(ARGS)

# pytest-xdist, one worker per CPU ("logical": a 2-vCPU CI box may count one physical core); a module's tests run on
# one worker (loadscope), the modules with the most slow tests first (tests/conftest.py). WORKERS=0 runs serially.
WORKERS ?= logical
test: setup  ## the whole test suite (unit + end-to-end on ../shared/data)
	$(PY) -m pytest -n $(WORKERS) --dist loadscope --no-loadscope-reorder $(ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

lock:  ## re-resolve requirements.in and requirements-dev.in into requirements.lock (uv keeps its current pins where it can)
	$(UV) pip compile requirements.in requirements-dev.in -o requirements.lock --python-version 3.11 --python-platform x86_64-manylinux_2_28

clean:
	rm -rf work scores mlartifacts mlruns mlflow.db .prefect
