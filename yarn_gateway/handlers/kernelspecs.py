"""Kernelspecs: GET /api/kernelspecs[/{name}] and their resource files."""

from __future__ import annotations

import mimetypes
import os
from typing import Any, Optional

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from ..errors import GatewayError
from ..utils import run_blocking
from .base import APIHandler

RESOURCE_FILES = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg", "kernel.js", "kernel.css")


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
        for name in list(specs):  # kernelspec ACLs: a user sees only what they may start
            if await self.policy.kernelspec_denial(self.caller.name, name) is not None:
                del specs[name]
        for name, model in specs.items():  # declared parameters with their effective defaults and bounds
            model["spec"] = self.registry.kernel_parameters.expose(name, model["spec"])
        default = self.settings["default_kernel_name"]
        if default not in specs and specs:
            default = sorted(specs)[0]
        self.finish_json({"default": default, "kernelspecs": specs})


class KernelSpecHandler(APIHandler):
    async def get(self, name: str) -> None:
        ksm: KernelSpecManager = self.settings["kernel_spec_manager"]
        await self.policy.check_kernelspec(self.caller.name, name)
        try:
            spec = await run_blocking(ksm.get_kernel_spec, name)
        except NoSuchKernel:
            raise GatewayError(404, f"No such kernelspec: '{name}'.", reason="No such kernelspec") from None
        spec_json = self.registry.kernel_parameters.expose(name, spec.to_dict())
        self.finish_json(_spec_model(name, spec.resource_dir, spec_json, self.settings["base_url"]))


class KernelSpecResourceHandler(APIHandler):
    """GET/HEAD /kernelspecs/{name}/{file}: logos and other files of a kernelspec."""

    async def get(self, name: str, fname: str, include_body: bool = True) -> None:
        ksm: KernelSpecManager = self.settings["kernel_spec_manager"]
        try:
            spec = await run_blocking(ksm.get_kernel_spec, name)
        except NoSuchKernel:
            raise GatewayError(404, f"No such kernelspec: '{name}'.", reason="No such kernelspec") from None
        if fname != os.path.basename(fname) or fname.startswith(".") or fname == "kernel.json":
            raise GatewayError(404, f"No such file: {fname}", reason="Not Found")
        data = await run_blocking(_read, os.path.join(spec.resource_dir, fname))
        if data is None:
            raise GatewayError(404, f"Kernelspec '{name}' has no file {fname}.", reason="Not Found")
        self.set_header("Content-Type", mimetypes.guess_type(fname)[0] or "application/octet-stream")
        self.set_header("Cache-Control", "max-age=3600")
        if include_body:
            self.finish(data)
        else:
            self.set_header("Content-Length", str(len(data)))
            self.finish()

    async def head(self, name: str, fname: str) -> None:
        await self.get(name, fname, include_body=False)


def _read(path: str) -> Optional[bytes]:
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()



