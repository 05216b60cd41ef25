"""The data stage: the schema (features, codes, validation at the boundary), the dataset and its split, identify.
Never imports the model, scoring, registry or any stage above them; pandas only inside the functions that build frames.
"""
