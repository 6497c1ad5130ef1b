"""The comparison: our coordinator and the peer queues (arq, Celery, RQ, pgqueuer, procrastinate) on the same
workloads, in one run on this machine, printed as one table with ratios.

    .venv/bin/python -m bench.compare [--quick] [--ours-only] [--only e2e,reads] [--json results.json]

See README.md (Performance) for what each workload means.
"""
