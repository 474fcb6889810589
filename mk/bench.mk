# Benchmark peers (bench/README.md). Included by the top-level Makefile.
# Each peer lives in its own virtualenv under bench/.venvs/ (gitignored) because its pins
# conflict with ours: Enterprise Gateway 3.3.0 needs jupyter_client<7 and pyzmq<25.
# ipykernel is installed in the same command as the pins: installed on its own it would
# pull a newer jupyter_client and pyzmq and break Enterprise Gateway.

BENCH_VENVS   ?= bench/.venvs
BENCH_PYTHON  ?= $(PYTHON)
EG_VERSION    ?= 3.3.0
BENCH_IPYKERNEL_VERSION ?= 6.29.5

.PHONY: bench-venvs bench-quick

$(BENCH_VENVS)/eg/.stamp: mk/bench.mk
	test -x $(BENCH_VENVS)/eg/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_VENVS)/eg
	$(BENCH_VENVS)/eg/bin/pip install -q --upgrade pip wheel
	$(BENCH_VENVS)/eg/bin/pip install -q 'jupyter-enterprise-gateway==$(EG_VERSION)' \
	    'ipykernel==$(BENCH_IPYKERNEL_VERSION)' 'jupyter_client<7' 'pyzmq<25'
	$(BENCH_VENVS)/eg/bin/pip check
	touch $@

bench-venvs: $(BENCH_VENVS)/eg/.stamp

bench-quick: venv bench-venvs curve-kernel-env
	$(PY) bench/gateway_bench.py --quick

# `make bench` (top-level Makefile) also needs the peers, and the ipykernel 7 kernel of the CurveZMQ targets.
bench: bench-venvs curve-kernel-env
