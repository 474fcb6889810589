"""Talking to YARN: the ResourceManager REST client and spark-submit."""
