# Two commands for users: `make demo` and `make test` (see README.md).
# Both create .venv with Python 3.11 when needed and install everything into it.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.dtt-installed
DEMO_OUT ?= out/demo

.PHONY: demo test install clean

demo: $(STAMP)
	$(BIN)/dtt demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q Testing

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Torch first, pinned; then the project, with torch held by the same pins as a constraint.
$(STAMP): $(BIN)/python pyproject.toml requirements/torch.txt
	$(PIP) install --quiet -r requirements/torch.txt
	$(PIP) install --quiet -c requirements/torch.txt -e ".[all,test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) out .pytest_cache
