# Veilbox: `make demo` sets up .venv (and bubblewrap) and runs the end-to-end story; `make test` lints and runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: demo test test-long lint bench clean venv browser sandbox-deps postgres openapi java cluster-test font messages softhsm

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# torch first, from its exact pin, so nothing resolves a CUDA build.
$(STAMP_RUN): pyproject.toml | $(PY)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e .
	touch $@

$(STAMP_DEV): pyproject.toml $(STAMP_RUN)
	$(PIP) install --quiet -e '.[dev,syft,spark]'
	touch $@

venv: $(STAMP_RUN)

# The demo's custom-code chapter runs user code under bubblewrap: `sandbox-deps` installs it when missing (apt only
# then, so a second `make demo` installs nothing).
demo: $(STAMP_RUN) sandbox-deps
	$(VENV)/bin/veilbox demo

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check vocab cryptosuite catalog policies sandbox mpc gateway veilbox tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The console tests drive Debian chromium through Playwright (never Playwright's own download); `make test` runs
# `make browser` first, which installs it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: browser tests will be skipped"; fi; }

# The bundled fonts: Droid Sans Fallback (CJK, Apache-2.0, Debian `fonts-droid-fallback`) and DejaVu Sans (Latin,
# Greek and symbols such as ε, free licence, `fonts-dejavu-core`). The console serves the CJK font (@font-face, CSP
# 'self') and the PDF reports embed both, so Chinese never depends on the viewer's or the server's own fonts.
FONT_DIR := gateway/console/static/fonts
FONTS := $(FONT_DIR)/DroidSansFallbackFull.ttf $(FONT_DIR)/DejaVuSans.ttf $(FONT_DIR)/DejaVuSans-Bold.ttf
font: $(FONTS)
$(FONTS):
	@test -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf -a -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-droid-fallback fonts-dejavu-core >/dev/null; \
	  else echo "fonts missing: apt-get install fonts-droid-fallback fonts-dejavu-core"; exit 1; fi; }
	mkdir -p $(FONT_DIR)
	cp /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
	  /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf $(FONT_DIR)/
	cp /usr/share/doc/fonts-droid-fallback/copyright $(FONT_DIR)/LICENSE-DroidSansFallback.txt
	cp /usr/share/doc/fonts-dejavu-core/copyright $(FONT_DIR)/LICENSE-DejaVu.txt

# Extract every translatable message (babel.cfg) and merge it into the zh-CN catalog; translate the new entries.
messages: $(STAMP_DEV)
	$(VENV)/bin/pybabel extract -F babel.cfg -k _ -k gettext -k gettext_noop -k ngettext:1,2 --no-location --sort-output \
	  --omit-header -o vocab/locale/messages.pot .
	$(VENV)/bin/pybabel update -i vocab/locale/messages.pot -d vocab/locale -l zh_CN --no-fuzzy-matching \
	  --ignore-obsolete --no-wrap
	rm -f vocab/locale/messages.pot

# The PKCS#11 master-key provider is tested against a real software token: SoftHSM2 (Debian `softhsm2`); install it
# when missing (tests/unit/catalog/test_keyring_pkcs11.py skips without it, except in CI).
softhsm:
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null; \
	  else echo "softhsm2 missing: the PKCS#11 master-key test will be skipped"; fi; }

# The custom-code runner isolates user code with bubblewrap (Debian package `bubblewrap`); install it when missing.
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else echo "bubblewrap missing: the custom-code runner will refuse to run"; fi; }

# The store-facing suites also run on a real PostgreSQL: tests/pg.py starts a throwaway cluster from Debian's
# server binaries (package `postgresql`); install them when missing. The cluster itself is never a service.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "PostgreSQL server binaries missing: the PostgreSQL half of the store suites will be skipped"; fi; }

# The Spark engine (the `spark` extra, PySpark 4.0) runs on a Java 17 runtime (Debian `openjdk-17-jre-headless`);
# install it when missing.
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else echo "java missing: the Spark engine tests will be skipped"; fi; }

test: $(STAMP_DEV) sandbox-deps browser postgres java font softhsm
	$(MAKE) lint
	$(VENV)/bin/pytest -n 2 --dist worksteal --durations=30 $(PYTEST_ARGS)

# The long generator profiles `make test` skips: randomized route fuzzing (fuzz_long) and many more generated
# queries on neighbouring datasets (slow_neighbours), generated extremes and both-neighbour oracles on Spark
# (spark_long).
test-long: $(STAMP_DEV) sandbox-deps postgres java
	$(VENV)/bin/pytest -n 2 --dist worksteal -m "fuzz_long or slow_neighbours or spark_long" $(PYTEST_ARGS)

# The docker/compose.yaml topology as local processes: a throwaway PostgreSQL, two gateways, two job workers, Spark
# local; runs the scale scenario (Spark query, budget race across gateways, kill -9 of a gateway). docs/deploy.md.
cluster-test: $(STAMP_DEV) postgres java
	$(VENV)/bin/pytest -m cluster tests/system/cluster -x

# The committed HTTP contract; tests/test_openapi_drift.py fails when it is stale.
openapi: $(STAMP_RUN)
	$(PY) -m gateway.openapi > docs/openapi.json.tmp && mv docs/openapi.json.tmp docs/openapi.json

# SmartNoise SQL, the secondary baseline of bench/sql.py, in a venv of its own (its pins clash with ours).
SNSQL := .venv-snsql
$(SNSQL)/.installed:
	$(PYTHON) -m venv $(SNSQL)
	$(SNSQL)/bin/python -m pip install --quiet smartnoise-sql==1.0.10 opendp==0.14.2 pandas==2.3.3 pyarrow==26.0.1
	touch $@

bench: $(STAMP_DEV) $(SNSQL)/.installed
	@for f in bench/*.py; do VEILBOX_SMARTNOISE_PYTHON=$(SNSQL)/bin/python $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) $(SNSQL) .veilbox .mypy_cache .ruff_cache .pytest_cache test-artifacts
