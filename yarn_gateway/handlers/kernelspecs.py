"""Kernelspecs: GET /api/kernelspecs[/{name}] and their resource files.

Names resolve to the canonical (lower-case) kernelspec name before any rule applies, so
every spelling of a name gets the same answer. A user sees only the kernelspecs they may
start; a resource file of a kernelspec they may not use is a 404, like one that does not
exist. Resource files are the logos and the kernel.js/kernel.css of a spec, served only
when they are regular files inside the spec's directory (no symlink leads out of it) and
at most :data:`MAX_RESOURCE_BYTES`.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from typing import Any, Optional

from jupyter_client.kernelspec import KernelSpecManager

from ..auth.kernelspec_acl import runs_on_gateway_host
from ..errors import GatewayError
from ..utils import run_blocking
from .base import APIHandler

RESOURCE_FILES = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg", "kernel.js", "kernel.css")
#: The files a client may fetch from a kernelspec's directory (what Jupyter frontends ask for).
RESOURCE_NAME = re.compile(r"logo-[A-Za-z0-9-]{1,40}\.(?:png|svg)|kernel\.(?:js|css)")
#: Largest resource file served (logos and kernel.js are a few KiB).
MAX_RESOURCE_BYTES = 1024 * 1024


def _spec_model(name: str, resource_dir: str, spec: dict[str, Any], base_url: str) -> dict[str, Any]:
    resources = {}
    for fname in RESOURCE_FILES:
        if os.path.isfile(os.path.join(resource_dir, fname)):
            key = os.path.splitext(fname)[0]
            resources[key] = f"{base_url}kernelspecs/{name}/{fname}"
    return {"name": name, "spec": spec, "resources": resources}


def all_spec_models(ksm: KernelSpecManager, base_url: str) -> dict[str, dict[str, Any]]:
    """Every kernelspec as jupyter_server models it (blocking: filesystem)."""
    out = {}
    for name, info in ksm.get_all_specs().items():
        out[name] = _spec_model(name, info["resource_dir"], info["spec"], base_url)
    return out


class KernelSpecsHandler(APIHandler):
    async def get(self) -> None:
        ksm: KernelSpecManager = self.settings["kernel_spec_manager"]
        specs = await run_blocking(all_spec_models, ksm, self.settings["base_url"])
        user = self.caller.name
        policy = self.policy
        groups = await policy.groups_of(user) if policy.kernelspec_acls or policy.local_kernel_groups else None
        for name in list(specs):  # a user sees only what they may start (local kernelspecs included)
            local = runs_on_gateway_host(specs[name]["spec"])
            if await policy.kernelspec_denial(user, name, local, groups) is not None:
                del specs[name]
        for name, model in specs.items():  # declared parameters with their effective defaults and bounds
            model["spec"] = self.registry.kernel_parameters.expose(name, model["spec"])
        default = self.settings["default_kernel_name"].lower()
        if default not in specs and specs:
            default = sorted(specs)[0]
        self.finish_json({"default": default, "kernelspecs": specs})


class KernelSpecHandler(APIHandler):
    async def get(self, name: str) -> None:
        ksm: KernelSpecManager = self.settings["kernel_spec_manager"]
        canonical, spec = await self.policy.resolve_kernelspec(ksm, self.caller.name, name)
        spec_json = self.registry.kernel_parameters.expose(canonical, spec.to_dict())
        self.finish_json(_spec_model(canonical, spec.resource_dir, spec_json, self.settings["base_url"]))


class KernelSpecResourceHandler(APIHandler):
    """GET/HEAD /kernelspecs/{name}/{file}: logos and other files of a kernelspec."""

    async def get(self, name: str, fname: str, include_body: bool = True) -> None:
        ksm: KernelSpecManager = self.settings["kernel_spec_manager"]
        try:
            canonical, spec = await self.policy.resolve_kernelspec(ksm, self.caller.name, name)
        except GatewayError as exc:
            if exc.status not in (403, 404):
                raise
            # A kernelspec the caller may not use does not exist for them (as with kernels).
            raise GatewayError(404, f"No such kernelspec: '{name}'.", reason="No such kernelspec",
                               log_message=f"No such kernelspec for {self.caller.name}: {exc.log_message}") from None
        if not RESOURCE_NAME.fullmatch(fname):
            raise GatewayError(404, f"Kernelspec '{canonical}' has no resource file {fname!r} (only logos, "
                               "kernel.js and kernel.css are served).", reason="Not Found")
        data = await run_blocking(read_resource, spec.resource_dir, fname)
        if data is None:
            raise GatewayError(404, f"Kernelspec '{canonical}' has no file {fname}.", reason="Not Found")
        self.set_header("Content-Type", mimetypes.guess_type(fname)[0] or "application/octet-stream")
        self.set_header("Cache-Control", "max-age=3600")
        if include_body:
            self.finish(data)
        else:
            self.set_header("Content-Length", str(len(data)))
            self.finish()

    async def head(self, name: str, fname: str) -> None:
        await self.get(name, fname, include_body=False)


def read_resource(resource_dir: str, fname: str) -> Optional[bytes]:
    """The bytes of ``resource_dir/fname`` if it is a regular file inside ``resource_dir``
    (a symlink may point only within it) of at most MAX_RESOURCE_BYTES; else None. Blocking."""
    base = os.path.realpath(resource_dir)
    path = os.path.realpath(os.path.join(base, fname))
    if os.path.dirname(path) != base and not path.startswith(base + os.sep):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RESOURCE_BYTES:
            return None
        data = f.read(MAX_RESOURCE_BYTES + 1)
    return data if len(data) <= MAX_RESOURCE_BYTES else None
