"""One owner of the launch deadline: the client's KERNEL_LAUNCH_TIMEOUT, else the provisioner's own.

Before, the registry always injected KERNEL_LAUNCH_TIMEOUT (its 60 s default), so
YarnProvisioner.launch_timeout (300 s) never applied and YARN launches got 60 s silently.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from traitlets.config import Config

from yarn_gateway.errors import GatewayError
from yarn_gateway.kernels.env import client_launch_timeout
from yarn_gateway.provisioners.host import HostedKernelManager, ProvisionerHost
from yarn_gateway.provisioners.yarn import YarnProvisioner

ECHO = ("import os, sys; from ipykernel.kernelapp import launch_new_instance; "
        "os.environ['SEEN'] = os.environ.get('KERNEL_LAUNCH_TIMEOUT', '<unset>'); launch_new_instance()")


async def test_only_a_clients_launch_timeout_reaches_the_kernel(make_gateway: Any, tmp_path: Any) -> None:
    spec_dir = tmp_path / "specs" / "echo"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-c", ECHO, "-f", "{connection_file}"], "display_name": "E", "language": "python"}))
    gw = await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [str(tmp_path / "specs")]},
                             "KernelRegistry": {"launch_timeout": 45.0, "max_launch_timeout": 100.0}})
    alice = gw.client("alice")
    seen = {}
    for sent in (None, "40", "1000"):
        kid = await alice.start_kernel("echo", env={"KERNEL_LAUNCH_TIMEOUT": sent} if sent else None)
        ws = await alice.connect(kid)
        seen[sent] = (await ws.execute("import os; os.environ['SEEN']")).text
        ws.close()
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
    # Not sent: nothing injected (the provisioner's default applies); sent: honoured up to the maximum.
    assert seen == {None: "'<unset>'", "40": "'40'", "1000": "'100'"}


class _Host:
    """The one thing of a gateway host this provisioner method reads."""

    def __init__(self, max_launch_timeout: float) -> None:
        self.max_launch_timeout = max_launch_timeout


def _provisioner(max_launch: float, **config: Any) -> YarnProvisioner:
    km = HostedKernelManager(host=cast(ProvisionerHost, _Host(max_launch)))
    c = Config()
    for k, v in config.items():
        setattr(c.YarnProvisioner, k, v)
    return YarnProvisioner(parent=km, config=c, kernel_id="k1")


def test_a_provisioner_outside_a_gateway_says_so() -> None:
    prov = YarnProvisioner(parent=HostedKernelManager(), kernel_id="k2")
    with pytest.raises(GatewayError) as err:
        prov.effective_launch_timeout({})
    assert err.value.status == 500 and "Kernel k2" in err.value.message and "HostedKernelManager" in err.value.message


def test_yarn_launch_timeout_precedence() -> None:
    # No client value: the provisioner's own default (300 s), capped by the registry's maximum.
    assert _provisioner(600.0).effective_launch_timeout({}) == 300.0
    assert _provisioner(120.0).effective_launch_timeout({}) == 120.0
    # The kernelspec's (or the admin's) launch_timeout for YARN kernels.
    assert _provisioner(600.0, launch_timeout=450.0).effective_launch_timeout({}) == 450.0
    # A client's value (the registry has capped it already) wins.
    assert _provisioner(600.0).effective_launch_timeout({"KERNEL_LAUNCH_TIMEOUT": "40"}) == 40.0


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "0", "-3", "soon"])
def test_client_launch_timeout_refuses_what_would_disable_the_deadline(raw: str) -> None:
    with pytest.raises(GatewayError) as err:
        client_launch_timeout({"KERNEL_LAUNCH_TIMEOUT": raw}, 600.0)
    assert err.value.status == 400 and "KERNEL_LAUNCH_TIMEOUT" in err.value.message
    assert client_launch_timeout({}, 600.0) is None
    assert client_launch_timeout({"KERNEL_LAUNCH_TIMEOUT": "900"}, 600.0) == 600.0
