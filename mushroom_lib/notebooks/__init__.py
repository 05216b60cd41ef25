"""Notebooks: the papermill runner, its run files and history, and the plotly figures the notebooks show.
Never imports the worker, the service or any surface; papermill and plotly only inside the functions that use them.
"""
