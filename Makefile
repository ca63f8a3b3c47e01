# The two commands a newcomer needs: `make demo` and `make test`. Both set themselves up on a fresh machine.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: demo test chaos install system-deps graph bench clean demo-down

demo: install                  ## start the local cache stack and open a chat with the agent
	$(BIN)/cachebot demo up
	$(BIN)/cachebot chat --config .demo/cachebot.yaml

test: install                  ## run the whole suite against real Varnish, nginx, Redis
	$(BIN)/pytest

chaos: install                 ## the short chaos run: replicas killed at random under Slack traffic (issue #11)
	$(BIN)/pytest -m chaos tests/bench/test_chaos.py

install: system-deps $(VENV)/.installed

system-deps:
	./scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

graph: install                 ## redraw graphs/ from the code
	$(BIN)/cachebot graph

demo-down:
	$(BIN)/cachebot demo down

clean:
	rm -rf $(VENV) .demo .cachebot
