"""The kernel registry: start, look up, interrupt, restart and stop kernels."""
