# The two commands a newcomer types:  make demo   and   make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA

.PHONY: install demo test test-fast model clean

$(STAMP): requirements.txt requirements-build.txt requirements-test.txt setup.py package.xml CMakeLists.txt $(wildcard msg/*.msg) tools/build_msgs.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -r requirements.txt -r requirements-build.txt -r requirements-test.txt
	bash tools/build_msgs.sh $(VENV)
	$(PY) -m pip install -q --no-deps --no-build-isolation .
	touch $@

install: $(STAMP)

# Runs the shipped model on frames of the synthetic world and writes overlays to out/demo/.
demo: install
	$(PY) -m panoptic_ros.demo --out out/demo

# The installed copy backs the console commands; refresh it so they run this tree's code.
test: install
	$(PY) -m pip install -q --no-deps --no-build-isolation .
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

# Reproduces models/panoptic_r18_synthetic.pt from scratch (data, training, held-out evaluation).
model: install
	bash tools/train_shipped_model.sh

clean:
	rm -rf $(VENV) build out
