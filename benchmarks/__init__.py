"""Side-by-side benchmarks of this homeserver and Synapse over HTTP (see benchmarks/README.md)."""
