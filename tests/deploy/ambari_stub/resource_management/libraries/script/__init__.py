from resource_management.libraries.script.script import Script

__all__ = ["Script"]
