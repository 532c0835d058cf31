"""Interop tests: our protocol core checked against real peers.

`test_synapse_crosscheck` compares event IDs, content and reference hashes,
signatures, redaction, canonical JSON, authorization verdicts and state
resolution with Synapse's own functions on Hypothesis-generated events and
room DAGs. Synapse runs in its own virtualenv (`synapse_venv`), called through
a long-lived subprocess (`synapse_oracle`, client in `oracle_client`).
"""
