# `make test` creates .venv (once), installs requirements.txt into it, and runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

.PHONY: install test browser play bench clean-venv

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

test: $(STAMP)
	$(PY) -m pytest

# What the play page's browser test needs (it is skipped without them): Playwright from PyPI,
# driving Debian's Chromium (installing it needs root; the test says so when it is missing).
PLAYWRIGHT := playwright==1.65.2
browser: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check $(PLAYWRIGHT)
	command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null || \
		(apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)

# One rollout per latent action, side by side, from res/example.png with the bundled model.
play: $(STAMP)
	$(PY) play.py --batch --num_frames 16 --output rollout.gif

bench: $(STAMP)
	$(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
