# Every target that needs Python creates and fills .venv first, so a fresh
# clone needs nothing but `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTO_SRC := $(wildcard proto/schakel/v1/*.proto)
ARGS ?=
PROTOC_PLUGINS := --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc

.PHONY: run test test-all lint proto proto-check bench profile dist clean report-samples

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[adapters,node,dev]'
	touch $(STAMP)

## run: start the dev federation (two nodes on SQLite with a generated dev PKI)
run: $(STAMP)
	$(BIN)/python -m gateway.dev.run $(ARGS)

## test: the fast suite (real gRPC over mTLS, SQLite and PostgreSQL), four workers
# Most of the suite waits on deadlines, fsyncs and network round trips: on a 2-core
# machine it keeps the cores about 75% busy with four pytest-xdist workers (2 workers:
# under half), so four finish it in about 4 minutes (TEST_WORKERS=0: serial).
TEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

## test-all: the fast suite plus the slow tests, serially (they measure load)
# The slow tests: kill -9 under load on SQLite and PostgreSQL (tests/gateway/flows/test_crash.py),
# the long fuzz run of every RPC (tests/gateway/rpc/test_fuzz.py), the 10-minute soak
# (tests/gateway/flows/test_soak.py), the signals load test, and three replicas on PostgreSQL
# behind HAProxy with kill -9 of the leader (tests/gateway/test_replicas.py; installs haproxy).
test-all: $(STAMP)
	$(BIN)/pytest -q -m ''

## lint: ruff, mypy --strict, the import contracts (pyproject: tool.importlinter), module size,
## generated protobuf code current, the Containerfile (hadolint), the Kubernetes manifests and
## the systemd unit (tests/deploy, which make test runs too)
lint: $(STAMP) proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m tests.support.module_size
	$(BIN)/hadolint --failure-threshold style Containerfile
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy

## proto: regenerate the Python API package from proto/
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto $(PROTOC_PLUGINS) \
	  --python_out=proto --grpc_python_out=proto \
	  --mypy_out=proto --mypy_grpc_out=proto $(PROTO_SRC)

## proto-check: fail when the committed generated code differs from proto/
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -Iproto $(PROTOC_PLUGINS) \
	  --python_out=$$tmp --grpc_python_out=$$tmp \
	  --mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_SRC) && \
	diff -r -x '__init__.py' -x '__pycache__' -x '*.proto' -x 'py.typed' $$tmp/schakel proto/schakel \
	  || { echo "generated code in proto/schakel is stale: run 'make proto'"; exit 1; }

## bench: benchmarks (pseudonyms, policy, audit, gRPC, flows, fan-out, 1 vs 3 replicas); writes
## bench-results/results.{md,json}; ARGS='caseflow fanout' for some areas, ARGS=--help lists them
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(ARGS)

## profile: flame graphs of the three case flows with py-spy (needs ptrace permission: root
## or kernel.yama.ptrace_scope=0), into bench-results/flame-<flow>-latest.svg and profile-latest.md
profile: $(STAMP)
	$(BIN)/python -m tests.bench.profile $(ARGS)

## report-samples: the sample inzage and signals reports and their screenshots in docs/images
report-samples: $(STAMP)
	$(BIN)/python -m gateway.dev.report_samples docs/images

## dist: build the wheel into dist/ (LICENSE and the generated API package included)
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) .state bench-results/results.* bench-results/*-latest.* dist build
