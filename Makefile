# Two commands matter on a fresh machine with Python 3.11 and make: `make run`, `make test`.
# The interpreter for .venv: the first CPython >= 3.11 with venv and ensurepip among
# the distribution's build (/usr/bin/python3.11: Debian and Ubuntu build it with PGO and
# LTO, which runs the engine ~15% faster than a plain source build such as pyenv's
# default), then python3.11, then python3. Override with `make PYTHON=...`.
PYTHON ?= $(shell for p in /usr/bin/python3.11 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && \
	{ echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# the compiled engine (services/matcher/compiled.py): rebuilt when its sources change;
# without a C compiler the pure-Python engine runs, as it does with EXCHANGE_PURE_ENGINE=1
ENGINE := services/matcher
BUILT  := $(ENGINE)/compiled.sha256
FIXSTAMP := $(VENV)/.fixtest-stamp

.PHONY: install etcd run down status test bench lint fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,tui,dev,bench,compiled]'
	touch $(STAMP)

$(BUILT): $(STAMP) $(ENGINE)/compiled.py $(foreach m,engine book state,$(ENGINE)/$(m).py $(ENGINE)/$(m).pxd)
	$(BIN)/python -c "from services.matcher.compiled import build; build()" >/dev/null || \
		echo "make: the compiled engine did not build; the pure-Python engine runs" >&2

# QuickFIX, the FIX tests' client, builds from source for minutes: the tests only
$(FIXSTAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fixtest]'
	touch $(FIXSTAMP)

install: $(STAMP) $(BUILT)

# etcd, for the cluster (docs/operations.md, "Three machines") and its tests: Debian's
# etcd-server package, installed when missing and we are root; else the tests that
# need it skip, saying why
etcd:
	@command -v etcd >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null 2>&1; }; }; } || \
	  echo "etcd is not installed (needs root and apt-get): the cluster tests will skip"

run: install
	$(BIN)/exchange up

down: install
	$(BIN)/exchange down

status: install
	$(BIN)/exchange status

test: install etcd $(FIXSTAMP)
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/exchange bench all --out bench/results

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis build
	rm -f $(ENGINE)/*.so $(ENGINE)/*.c $(BUILT)
