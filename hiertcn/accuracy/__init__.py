"""The accuracy benchmark, `hiertcn bench accuracy` -> benchmarks/results/accuracy.json.

Read in this order: plan (settings, data, jobs and their order) -> grids (what each
model may be tuned over) -> jobs (one job's work, in a child process) -> runner (the
pool, the log, the files) -> report (the results' keys, the lifts) -> table (the
README's markdown); estimate (the timing probe behind `--plan`); options (the CLI).
The statistics are hiertcn/stats.py; the data protocol (K-fold over users, filters
fitted on training users) is hiertcn/data/splits.py and hiertcn/data/filters.py.
"""
