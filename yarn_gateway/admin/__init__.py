"""Administrator commands: ``yarn-gateway kernels`` (REST client) and ``yarn-gateway check``."""
