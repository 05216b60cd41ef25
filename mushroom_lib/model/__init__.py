"""The model stage: the scikit-learn Pipeline with its threshold and metrics, the known set and the safety rules.
Never imports the registry, scoring or anything above; scikit-learn only inside the functions that build or fit.
"""
