"""The registry stage: model versions on disk, their immutable records and the champion pointer.
Stores and verifies; never imports scoring, training or any stage above (loading a model to score lives in scoring).
"""
