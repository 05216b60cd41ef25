"""The dashboard page (app.ipynb) and its Voila template (share/voila/templates/mushroom), shipped in the wheel
as the package ``mushroom_lib.dashboard.files`` (setup.py maps this folder there; mushroom_lib.dashboard.server
finds them with importlib.resources). `mushroom dashboard` serves app.ipynb."""
