"""Only what pyproject.toml cannot say: the packages, two of which live outside mushroom_lib/.

The notebooks (notebooks/) and the dashboard page (dashboards/: app.ipynb and its Voila template) stay where
users open them, and ship inside the package as ``mushroom_lib.notebooks.files`` and
``mushroom_lib.dashboard.files`` (setuptools package-dir mapping), which the code finds through
importlib.resources: the same lookup in a checkout, an editable install, a wheel and the image.
"""

from setuptools import find_packages, setup

MAPPED = {"mushroom_lib.notebooks.files": "notebooks", "mushroom_lib.dashboard.files": "dashboards"}

setup(packages=find_packages(include=["mushroom_lib*"]) + list(MAPPED), package_dir=MAPPED)
