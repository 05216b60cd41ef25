"""The `mushroom` command: parse the arguments, call the library, print the outcome.
Never holds logic of its own; nothing else in mushroom_lib imports it.
"""

from .commands import main

__all__ = ["main"]
