"""The benchmark suite: `python -m bench` (see bench/README.md).

Modules: stats (pure statistics), timing (timing loops), evalsets (data), signals (test audio),
matrix + worker (model x backend accuracy/latency/memory), streaming (live engine), noise
(accuracy vs SNR), suite (the run and its JSON), report (CSV/Markdown/plots from the JSON only).
"""
