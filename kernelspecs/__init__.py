"""Kernelspecs shipped with yarn-gateway (installed as the package yarn_gateway.kernelspecs)."""
