"""Reports from the bench JSON files only: flat CSVs, a Markdown report, seaborn plots.

Nothing here measures anything; `python -m bench report` rebuilds every file from
`results/bench/*.json`, so a report can be regenerated, restyled or merged across runs
(e.g. a CPU run here and a GPU run elsewhere) without re-running the benchmark.

One module per section of the report, each holding its tables, its Markdown and its plots, on
`base` (the loaded runs, `Runs`, and the helpers they share); `build` writes the files and puts
the sections in order:

- sanity: figures that contradict themselves (the report opens with them)
- hardware, datasets: where and on what the run measured
- matrix: accuracy x latency, the latency heatmap, throughput, 1 thread vs all cores
- accuracy: one table per data set, the best model's confusion matrix
- streaming: the live engine on word streams and a keyword-free stream
- noise: accuracy vs SNR
- wakeword: DET curves and FA/h from results/wakeword.json (also alone as results/wakeword.md)
- failures, method
"""
# The names other code imports from `bench.report` (bench.__main__, bench.index, bench.gallery, tests).
from bench.report.base import RESULTS, Runs, _plt, latest_runs, load_runs, md_table, read_run  # noqa: F401
from bench.report.build import REPORT_NAME, ReportFiles, build_report  # noqa: F401
from bench.report.matrix import summary_table  # noqa: F401
