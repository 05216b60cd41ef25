"""Shared ground: settings, errors, the vocabulary (labels, column names, UTC stamps), durable file writes, ports.
Never imports another package of mushroom_lib, nor anything heavier than the standard library and pydantic.
"""
