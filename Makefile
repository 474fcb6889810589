# yarn-gateway — the two commands a newcomer needs are `make run` and `make test`.
# Everything either needs is installed from here (apt as root, pip into virtualenvs).

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(VENV)/bin/pip
# The "cluster" side (what runs inside the dev cluster's YARN containers, possibly as other Unix
# users) needs an interpreter every account can execute: Debian's, in a world-readable place.
CLUSTER_PYTHON ?= /usr/bin/python3
CLUSTER_ENV    ?= /opt/yarn-gateway-dev/cluster-venv
PYSPARK_VERSION ?= 3.5.9
STATE_DIR   ?= .state
APT_PACKAGES := krb5-kdc krb5-admin-server krb5-user libkrb5-dev zookeeper \
                r-base-core r-cran-irkernel rpm maven openjdk-17-jdk-headless
PYTEST_ARGS ?=

.PHONY: help deps apt venv cluster-env curve-kernel-env devcluster-jars run stop-cluster test test-fast test-unit client-wheelhouse lint bench clean

help:
	@echo "make run    - install what is needed, start a single-host YARN and the gateway (prints how to connect)"
	@echo "make stop-cluster - stop the YARN cluster make run started (and every kernel in it)"
	@echo "make test   - install everything the tests need and run the whole suite"
	@echo "make test-fast - the YARN failure paths in about 30 s (no JVM, no cluster)"
	@echo "make lint   - ruff + mypy"
	@echo "make bench  - benchmarks (see bench/README.md)"

deps: apt venv cluster-env cluster-toree devcluster-jars

# apt: only when something is missing (CI runs as root on a fresh machine).
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.stamp: setup.py requirements-test.txt pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q -e . -e ./client -r requirements-test.txt
	touch $@

venv: $(VENV)/.stamp

$(CLUSTER_ENV)/.stamp: Makefile
	test -x $(CLUSTER_ENV)/bin/python || $(CLUSTER_PYTHON) -m venv $(CLUSTER_ENV)
	$(CLUSTER_ENV)/bin/pip install -q --upgrade pip wheel
	$(CLUSTER_ENV)/bin/pip install -q pyspark==$(PYSPARK_VERSION) ipykernel==6.29.5 pycryptodome
	chmod -R a+rX $(CLUSTER_ENV)
	touch $@

cluster-env: $(CLUSTER_ENV)/.stamp

# A local kernel that speaks CurveZMQ (ipykernel 7 declares `supported_encryption`): the
# relay's encrypted path is tested end to end against it. Its own venv: the gateway's and the
# cluster's kernels stay on ipykernel 6 until every launcher moves.
CURVE_KERNEL_ENV ?= build/curve-kernel-venv
$(CURVE_KERNEL_ENV)/.stamp: Makefile
	test -x $(CURVE_KERNEL_ENV)/bin/python || $(PYTHON) -m venv $(CURVE_KERNEL_ENV)
	$(CURVE_KERNEL_ENV)/bin/pip install -q --upgrade pip
	$(CURVE_KERNEL_ENV)/bin/pip install -q ipykernel==7.4.0
	touch $@

curve-kernel-env: $(CURVE_KERNEL_ENV)/.stamp

# Apache Hadoop's ResourceManager/NodeManager jars from Maven Central (cached in ~/.m2; the
# classpath in ~/.cache/yarn-gateway-devcluster). Nothing is resolved again once cached.
devcluster-jars: venv
	$(PY) -c "from devcluster.maven import daemon_classpath; print(len(daemon_classpath()), 'Hadoop jars resolved')"

lint: venv
	$(VENV)/bin/ruff check yarn_gateway client devcluster launchers/python tests bench
	$(VENV)/bin/mypy

# pytest's exit code 5 ("no tests collected") must never pass for success.
test: deps lint scala-launcher client-wheelhouse curve-kernel-env
	@YARN_GATEWAY_CLUSTER_ENV=$(CLUSTER_ENV) YARNGW_CLIENT_WHEELHOUSE=$(CLIENT_WHEELHOUSE) \
	YARNGW_CURVE_KERNEL_PYTHON=$(CURVE_KERNEL_ENV)/bin/python $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure"; exit 1; fi; exit $$rc

# Wheels of the desktop package and its dependencies, so that the packaging test installs it
# into a clean venv without reaching the network.
CLIENT_WHEELHOUSE ?= build/wheelhouse/client
client-wheelhouse: $(CLIENT_WHEELHOUSE)/.stamp
$(CLIENT_WHEELHOUSE)/.stamp: client/pyproject.toml client/yarn_gateway_client/__init__.py $(VENV)/.stamp
	$(PIP) wheel -q -w $(CLIENT_WHEELHOUSE) ./client
	touch $@

# The failure paths of the YARN provisioner (stand-in spark-submit and RM, the real launcher): about 30 s.
test-fast: venv
	@$(PY) -m pytest -m fast $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 1; exit $$rc

# Everything without a JVM kernel or a cluster end to end.
test-unit: venv
	@$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 1; exit $$rc

run: deps scala-launcher
	YARN_GATEWAY_CLUSTER_ENV=$(CLUSTER_ENV) $(PY) -m devcluster.run --state-dir $(STATE_DIR)

stop-cluster: venv
	$(PY) -m devcluster stop --base-dir $(STATE_DIR)/yarn

bench: deps
	$(PY) bench/run_all.py

clean:
	if [ -x $(PY) ]; then $(PY) -m devcluster stop --base-dir $(STATE_DIR)/yarn; fi
	rm -rf build dist *.egg-info $(STATE_DIR)

# Component makefiles (launcher jar, packaging, ...).
-include mk/*.mk
