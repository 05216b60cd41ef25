"""The `mushroom predict` path: byte and CSV readers, distinct rows, the writer, reader/writer threads, dask.
Never imports feedback, training, the service or any surface; no pandas or scikit-learn on the usual-layout path.
"""
