# YARN-path benchmarks (bench/yarn_README.md). Included by the top-level Makefile.
# They start a real single-host YARN of their own (devcluster, port base YARN_BENCH_PORT_BASE,
# default 35000) and stop it at the end. The kernels run in the cluster env (PySpark, Toree,
# IRkernel); the Scala kernel needs the launcher jar (scala-launcher).
# The peer (Jupyter Kernel Gateway + gateway_provisioners' YarnProvisioner) lives in its own
# virtualenv under bench/.venvs/ (gitignored). Its launcher needs pycryptodomex inside the
# YARN containers, which the cluster env does not have: it is installed into a plain
# directory that the peer's kernelspec puts on the driver's PYTHONPATH.

BENCH_VENVS        ?= bench/.venvs
BENCH_PYTHON       ?= $(PYTHON)
JKG_VERSION        ?= 3.0.1
GP_VERSION         ?= 0.5.0
BENCH_IPYKERNEL_VERSION ?= 6.29.5
BENCH_YARN_DEPS    := venv cluster-env cluster-toree devcluster-jars scala-launcher
BENCH_YARN_ENV     := YARN_GATEWAY_CLUSTER_ENV=$(CLUSTER_ENV)

.PHONY: bench-yarn-venv bench-yarn bench-yarn-quick bench-recovery bench-recovery-quick

$(BENCH_VENVS)/jkg/.stamp: mk/bench_yarn.mk
	test -x $(BENCH_VENVS)/jkg/bin/python || $(BENCH_PYTHON) -m venv $(BENCH_VENVS)/jkg
	$(BENCH_VENVS)/jkg/bin/pip install -q --upgrade pip wheel
	$(BENCH_VENVS)/jkg/bin/pip install -q 'jupyter_kernel_gateway==$(JKG_VERSION)' \
	    'gateway_provisioners[yarn]==$(GP_VERSION)' 'ipykernel==$(BENCH_IPYKERNEL_VERSION)'
	$(BENCH_VENVS)/jkg/bin/pip check
	$(BENCH_VENVS)/jkg/bin/pip install -q --upgrade --target $(BENCH_VENVS)/gp-driver-libs pycryptodomex
	touch $@

bench-yarn-venv: $(BENCH_VENVS)/jkg/.stamp

bench-yarn: $(BENCH_YARN_DEPS) bench-yarn-venv
	$(BENCH_YARN_ENV) $(PY) bench/yarn_launch.py

bench-yarn-quick: $(BENCH_YARN_DEPS) bench-yarn-venv
	$(BENCH_YARN_ENV) $(PY) bench/yarn_launch.py --quick

bench-recovery: venv cluster-env devcluster-jars
	$(BENCH_YARN_ENV) $(PY) bench/recovery_bench.py

bench-recovery-quick: venv cluster-env devcluster-jars
	$(BENCH_YARN_ENV) $(PY) bench/recovery_bench.py --quick
