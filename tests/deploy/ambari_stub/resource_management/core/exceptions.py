"""resource_management.core.exceptions (stand-in)."""


class Fail(Exception):
    pass


class ComponentIsNotRunning(Exception):
    pass
