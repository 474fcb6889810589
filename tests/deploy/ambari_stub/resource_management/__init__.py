"""A small stand-in for Ambari's resource_management, enough to run command scripts in tests.

Same module paths, names and call signatures as the real library for what the YARN_GATEWAY
scripts use; the resources act at once (no provider machinery).
"""
