"""Kernel provisioners (YARN, local), the response listener and the launcher control client."""
