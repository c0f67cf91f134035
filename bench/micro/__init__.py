"""pytest-benchmark suites (frontend, batch-1 inference per backend); not part of the default `tests/` run.

Run and store, then compare two commits (see bench/README.md):

    .venv/bin/python -m pytest bench/micro --benchmark-storage=results/micro \
        --benchmark-save=$(git rev-parse --short HEAD) --benchmark-json=results/micro/$(git rev-parse --short HEAD).json
    .venv/bin/python -m pytest bench/micro --benchmark-storage=results/micro --benchmark-compare=0001
"""
