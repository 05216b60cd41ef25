"""The project's notebooks, shipped in the wheel as the package ``mushroom_lib.notebooks.files`` (setup.py maps
this folder there; mushroom_lib.notebooks.runner finds them with importlib.resources). Open them in JupyterLab
from here; `mushroom train --notebook` and `mushroom report` run them with papermill."""
