"""Tracing: Python functions on symbolic values become the IR of federated computations
(`federated_computation`), and the federated operators users call while tracing (`operators`)."""
