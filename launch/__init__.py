"""Launchers: the same trainer job as N local worker processes, or on Kubernetes."""
