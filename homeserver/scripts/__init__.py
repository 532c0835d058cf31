"""Operator command-line tools, installed as console commands (see setup.py)."""
