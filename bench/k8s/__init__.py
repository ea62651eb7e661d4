"""Kubernetes: load workers as an Indexed Job, and broker faults through the API.

The official ``kubernetes`` client is an optional dependency (``pip install 'bench[k8s]'``),
imported only when one of these is used.
"""
