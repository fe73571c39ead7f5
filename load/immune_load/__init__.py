"""What the load gate's tool (locust, `load/locustfile.py`) reads and uses: the scenarios as request rates
(`shapes`), k6-style thresholds (`thresholds`), locust's statistics as their metric source
(`locust_metrics`) and one run's options, samples and result file (`run`). The runner that turns a run's
output into a verdict lives in `immune_suite/gates/load.py`.
"""
