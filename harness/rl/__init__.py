"""The RL step loop against a deployment: its kind's control plane as data (kinds.py), driven on every
engine (control.py), and one step's weight sync checked against what the kind promises (step.py)."""
