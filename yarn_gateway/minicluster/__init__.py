"""A single-host stand-in for a YARN cluster: development, demos and tests only.

Never used in production. See ../shared/reference/yarn_fidelity.md for the behaviour it
reproduces.
"""
