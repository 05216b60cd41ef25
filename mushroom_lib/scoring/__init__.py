"""The scoring stage: the Scorer (p_poisonous, then the safety rules), the accelerator and its saved plan, and
the loader that gives "the scorer of version V". Never imports batch, feedback, training or any surface.
"""
