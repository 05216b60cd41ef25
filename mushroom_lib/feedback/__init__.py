"""The feedback stage: labelled rows, their review (exclude, include), the retrain queue and its outcomes.
Never trains and never imports training, monitoring, notebooks, the worker, the service or any surface.
"""
