"""The training stage: one run from rows to a registered (and possibly promoted) version: fit, evaluate, gate.
Never imports monitoring, notebooks, the worker, the service or any surface.
"""
