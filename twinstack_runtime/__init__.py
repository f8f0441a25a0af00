"""What both services run on, apart from the contract: serving policy (pool sizes, ports),
the gunicorn hooks, settings, JSON logging, Prometheus metrics, proxy trust, the container
healthcheck, the job store and the workloads the routes run.
"""
