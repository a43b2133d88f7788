# The two commands of the README: `make demo` runs a real search on bundled data, `make test` runs
# the tests. Both create .venv and install what they need (torch 2.13.0 CPU first).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch's CPU wheel from ../shared/wheels when that folder exists (PyPI's own torch is a CUDA build)
WHEELS := $(wildcard ../shared/wheels)
FIND_LINKS := $(if $(WHEELS),--find-links $(WHEELS))

.PHONY: demo test test-deps test-fast lint crd bench clean cluster

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(FIND_LINKS) torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nasop run examples/quick.yaml --state-dir .nasop-demo --preload lightning.pytorch,torch.utils.tensorboard

test: $(STAMP) test-deps lint
	$(BIN)/python -m pytest -q -W ignore::DeprecationWarning --durations=15

# ruff (lint and format) and mypy, configured in pyproject.toml; `make test` runs them first
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Debian's packages the image and node tests use (installed when missing, as root): the Docker
# engine, debootstrap, containerd and runc, the CNI plugins, gcc (the pause binary), chromium
# (the report rendered in a headless browser)
DEBS := docker.io debootstrap containerd runc containernetworking-plugins gcc libc6-dev chromium
test-deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "the image and node tests need: sudo apt-get install $$missing"; fi; \
	fi

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not operator and not image and not node"

crd: $(STAMP)
	$(BIN)/nasop crd -o crds/nasexperiments.yaml -o charts/nasop/crds/nasexperiments.yaml

clean:
	rm -rf .nasop .nasop-demo report.html

# A real cluster in the foreground (Ctrl-C stops it): the control plane (etcd, kube-apiserver,
# kube-controller-manager built from Go modules, cached by version in ~/.cache/nasop/cluster), a
# node with Volcano, both nasop images built from this tree and loaded, the chart installed.
# KUBECONFIG=FILE gets an admin kubeconfig.
KUBECONFIG ?= $(CURDIR)/.nasop-cluster.kubeconfig
cluster: $(STAMP)
	$(BIN)/python tests/cluster/controlplane.py --kubeconfig $(KUBECONFIG)
