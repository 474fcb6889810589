# The Scala (Apache Toree) kernel launcher (launchers/scala/README.md). Included by the
# top-level Makefile. javac only: no sbt, no Maven, nothing downloaded but Toree itself.
#
#   make cluster-toree    pip install toree into $(CLUSTER_ENV) (its sdist ships the assembly jar)
#   make scala-launcher   compile launchers/scala/src into launchers/scala/build/yarn-gateway-toree-launcher.jar
#                         and copy it plus toree-assembly.jar into launchers/python/ (both gitignored), where
#                         the YarnProvisioner and `yarn-gateway install-kernelspecs` find launcher files.

TOREE_VERSION   ?= 0.5.0
SCALA_DIR       := launchers/scala
SCALA_BUILD     := $(SCALA_DIR)/build
SCALA_SRCS      := $(shell find $(SCALA_DIR)/src -name '*.java' 2>/dev/null)
SCALA_JAR       := $(SCALA_BUILD)/yarn-gateway-toree-launcher.jar
SCALA_INSTALL   := launchers/python
JAVAC           ?= javac
JAR             ?= jar
# Toree 0.5.0's classes are Java 8; ours run on the cluster's JVM (17 here), 8 keeps them loadable anywhere Toree is.
JAVAC_RELEASE   ?= 8

.PHONY: cluster-toree scala-launcher

# The cluster env must exist (make cluster-env); it is not a prerequisite so that a newer Makefile
# does not make every jar build reinstall it.
$(CLUSTER_ENV)/.toree-stamp: mk/scala.mk
	@test -x $(CLUSTER_ENV)/bin/pip || { echo "cluster-toree: $(CLUSTER_ENV) is missing: run make cluster-env"; exit 1; }
	$(CLUSTER_ENV)/bin/pip install -q 'toree==$(TOREE_VERSION)'
	chmod -R a+rX $(CLUSTER_ENV)
	touch $@

cluster-toree: $(CLUSTER_ENV)/.toree-stamp

# The jars are looked up when the recipe runs (the cluster env's Python version is not fixed).
$(SCALA_JAR): $(SCALA_SRCS) mk/scala.mk $(CLUSTER_ENV)/.toree-stamp
	@site=$$(ls -d $(CLUSTER_ENV)/lib/python3*/site-packages | head -n1); \
	toree=$$(ls $$site/toree/lib/toree-assembly-*.jar 2>/dev/null | head -n1); \
	spark=$$site/pyspark/jars; \
	if [ -z "$$toree" ] || [ ! -d "$$spark" ]; then \
	  echo "scala-launcher: toree or pyspark missing in $(CLUSTER_ENV): run make cluster-env cluster-toree"; exit 1; fi; \
	rm -rf $(SCALA_BUILD)/classes && mkdir -p $(SCALA_BUILD)/classes && \
	$(JAVAC) -nowarn -Xlint:-options --release $(JAVAC_RELEASE) -encoding UTF-8 -d $(SCALA_BUILD)/classes \
	    -cp "$$toree:$$spark/*" $(SCALA_SRCS) && \
	$(JAR) cf $@ -C $(SCALA_BUILD)/classes . && \
	cp -f "$$toree" $(SCALA_BUILD)/toree-assembly.jar && \
	echo "built $@ (Toree: $$toree)"

$(SCALA_INSTALL)/%.jar: $(SCALA_JAR)
	cp -f $(SCALA_BUILD)/$*.jar $@

scala-launcher: $(SCALA_INSTALL)/yarn-gateway-toree-launcher.jar $(SCALA_INSTALL)/toree-assembly.jar
