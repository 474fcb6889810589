# Deployment artifacts (issue 8). Included by the top-level Makefile. Outputs under build/ (gitignored).
#
#   make rpm           build/rpm/RPMS/<arch>/yarn-gateway-<version>-1.<arch>.rpm  (rpmbuild; wheelhouse inside)
#   make ambari-mpack  build/yarn-gateway-ambari-mpack-<version>.tar.gz
#   make csd           build/YARN_GATEWAY-<version>.jar  (Cloudera Manager CSD)
#
# RPM_PYTHON is the interpreter of the edge nodes (the wheels are built for it; %post makes
# the venv with /usr/bin/python3). RPM_REQUIREMENT is what %post installs from the wheelhouse.

DEPLOY_VERSION  ?= $(shell sed -n 's/^ *version="\([^"]*\)".*/\1/p' setup.py)
RPM_PYTHON      ?= /usr/bin/python3
RPM_EXTRAS      ?= [kerberos]
RPM_REQUIREMENT ?= yarn-gateway$(RPM_EXTRAS)==$(DEPLOY_VERSION)
RPM_TOP         := $(CURDIR)/build/rpm
RPMBUILD        ?= rpmbuild
DEPLOY_SRCS     := $(shell find rpm ambari cloudera -type f -not -name '*.pyc' 2>/dev/null)

.PHONY: rpm ambari-mpack csd

# The Scala kernel needs its launcher jar inside the package: build it first.
rpm: scala-launcher $(DEPLOY_SRCS) setup.py
	rm -rf $(RPM_TOP)/SOURCES $(RPM_TOP)/BUILD $(RPM_TOP)/BUILDROOT $(RPM_TOP)/RPMS $(RPM_TOP)/wheelhouse
	mkdir -p $(RPM_TOP)/SOURCES $(RPM_TOP)/SPECS $(RPM_TOP)/wheelhouse
	test -x $(RPM_TOP)/wheelvenv/bin/python || $(RPM_PYTHON) -m venv $(RPM_TOP)/wheelvenv
	$(RPM_TOP)/wheelvenv/bin/python -m pip install -q --upgrade pip wheel
	# The package and every runtime dependency, as wheels for RPM_PYTHON (sdists are built here).
	$(RPM_TOP)/wheelvenv/bin/python -m pip wheel -q -w $(RPM_TOP)/wheelhouse ".$(RPM_EXTRAS)" pip
	tar -cf $(RPM_TOP)/SOURCES/wheelhouse.tar -C $(RPM_TOP)/wheelhouse .
	cp rpm/yarn-gateway.service rpm/yarn-gateway.sysconfig rpm/yarn_gateway_config.py rpm/yarn-gateway-setup \
	   $(RPM_TOP)/SOURCES/
	cp rpm/yarn-gateway.spec $(RPM_TOP)/SPECS/
	$(RPMBUILD) -bb --quiet --define "_topdir $(RPM_TOP)" --define "gw_version $(DEPLOY_VERSION)" \
	   --define "gw_requirement $(RPM_REQUIREMENT)" $(RPM_TOP)/SPECS/yarn-gateway.spec
	@ls $(RPM_TOP)/RPMS/*/yarn-gateway-$(DEPLOY_VERSION)-*.rpm

ambari-mpack: $(DEPLOY_SRCS)
	rm -rf build/ambari-mpack && mkdir -p build/ambari-mpack/yarn-gateway-ambari-mpack-$(DEPLOY_VERSION)
	cp -r ambari/. build/ambari-mpack/yarn-gateway-ambari-mpack-$(DEPLOY_VERSION)/
	find build/ambari-mpack -name '__pycache__' -prune -exec rm -rf {} +
	tar -czf build/yarn-gateway-ambari-mpack-$(DEPLOY_VERSION).tar.gz -C build/ambari-mpack \
	   yarn-gateway-ambari-mpack-$(DEPLOY_VERSION)
	@echo build/yarn-gateway-ambari-mpack-$(DEPLOY_VERSION).tar.gz

# A CSD is a jar (zip) of descriptor/, scripts/ (and optional images/); `jar` is not needed.
csd: $(DEPLOY_SRCS)
	rm -rf build/csd && mkdir -p build/csd
	cp -r cloudera/. build/csd/
	chmod 755 build/csd/scripts/*.sh
	rm -f build/YARN_GATEWAY-$(DEPLOY_VERSION).jar
	cd build/csd && $(RPM_PYTHON) -c 'import sys, zipfile, os; z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED); [z.write(os.path.join(d, f), os.path.relpath(os.path.join(d, f), ".")) for d, _, fs in sorted(os.walk(".")) for f in sorted(fs)]; z.close()' ../YARN_GATEWAY-$(DEPLOY_VERSION).jar
	@echo build/YARN_GATEWAY-$(DEPLOY_VERSION).jar
