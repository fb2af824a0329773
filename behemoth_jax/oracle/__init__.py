"""The retrain oracle: the model retrained from scratch on the edited world, and what it says about an edit.
Its own room because it both retrains (train/) and compares with edit runs (edit/), which evaluate/ may
not import. Imports model/, evaluate/, train/ and edit/.

Entry points: retrain.run (what `python -m experiments.oracle` calls).
"""
