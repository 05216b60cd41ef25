"""The background worker: one process per home runs every queued retrain and monitoring report, in order.
Started as `python -m mushroom_lib.worker`; never imports the service or any surface.
"""
