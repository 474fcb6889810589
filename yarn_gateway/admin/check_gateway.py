"""``yarn-gateway check``: the gateway-side checks (authentication, kernelspecs, local
kernels, listening address, TLS, session store).

Each check function takes the configured :class:`~yarn_gateway.app.YarnGatewayApp` (not
started) and yields one :class:`Check` per item, named so that an administrator can find
the setting to fix. Checks never raise: an unexpected error is a ``FAIL`` of that item.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from traitlets.utils.importstring import import_item

from .checks import FAIL, OK, WARN, Check

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpecManager

    from ..app import YarnGatewayApp

YARN_PROVISIONER = "yarn-provisioner"


def trait_value(app: YarnGatewayApp, cls: type, name: str) -> Any:
    """The configured value of ``cls.name`` (for classes that need a live parent to exist)."""
    section = app.config.get(cls.__name__, {})
    if name in section:
        return section[name]
    return cls.class_traits()[name].default_value  # type: ignore[attr-defined]


# -- authentication -----------------------------------------------------------------------
def check_authenticator(app: YarnGatewayApp) -> Iterator[Check]:
    from ..app import AUTHENTICATORS
    from ..auth.kerberos import KerberosAuthenticator
    from ..auth.token import TokenAuthenticator

    kind = app.authenticator_class
    try:
        auth = import_item(AUTHENTICATORS.get(kind, kind))(parent=app, log=app.log)
        auth.check_bind(app.ip)
    except Exception as exc:
        yield Check(FAIL, "authenticator", f"{kind}: {exc}")
        return
    if isinstance(auth, TokenAuthenticator):
        yield from _check_tokens(auth)
    elif isinstance(auth, KerberosAuthenticator):
        yield from _check_http_keytab(auth.keytab)
    elif auth.kind == "none":
        yield Check(WARN, "authenticator", f"none: no authentication (allowed only on loopback {app.ip})")
    else:
        yield Check(OK, "authenticator", f"{type(auth).__module__}.{type(auth).__name__}")


def _check_tokens(auth: Any) -> Iterator[Check]:
    from ..auth.token import token_file_problem

    if not auth.token and not auth.token_file:
        yield Check(FAIL, "authenticator", "token authentication without a token: set TokenAuthenticator.token_file "
                    "(or TokenAuthenticator.token / $YARN_GATEWAY_TOKEN)")
        return
    yield Check(OK, "authenticator", "token" + (" (shared token set)" if auth.token else ""))
    path = auth.token_file
    if not path:
        return
    try:
        st = os.stat(path)
    except OSError as exc:
        yield Check(FAIL, "token-file", f"{path}: {exc.strerror}")
        return
    mode = stat.S_IMODE(st.st_mode)
    problem = token_file_problem(path, st)
    if problem:  # the daemon refuses to start with it
        yield Check(FAIL, "token-file", problem)
        return
    try:
        users = auth._load_file()
    except (OSError, UnicodeDecodeError) as exc:
        yield Check(FAIL, "token-file", f"{path}: {exc}")
        return
    if not users:
        yield Check(WARN, "token-file", f"{path} names no users")
    else:
        yield Check(OK, "token-file", f"{path}: {len(users)} user(s), mode {mode:04o}")


def _check_http_keytab(keytab: str) -> Iterator[Check]:
    from .check_yarn import keytab_principals

    if not keytab or not os.access(keytab, os.R_OK) or not os.path.isfile(keytab):
        yield Check(FAIL, "http-keytab", f"KerberosAuthenticator.keytab {keytab!r} is missing or unreadable")
        return
    principals, error = keytab_principals(keytab)
    http = [p for p in principals if p.startswith("HTTP/")]
    if error:
        yield Check(FAIL, "http-keytab", f"{keytab}: {error}")
    elif not http:
        yield Check(FAIL, "http-keytab", f"{keytab} holds no HTTP/<host> principal (has: {', '.join(principals)})")
    else:
        yield Check(OK, "http-keytab", f"{keytab}: {', '.join(sorted(set(http)))}")


# -- kernelspecs ----------------------------------------------------------------------------
def kernel_spec_manager(app: YarnGatewayApp) -> KernelSpecManager:
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager(parent=app, kernel_dirs=list(app.kernelspec_dirs), ensure_native_kernel=False)


def yarn_specs(app: YarnGatewayApp) -> list[str]:
    """Names of the kernelspecs that launch through YARN (those that need spark-submit)."""
    names = []
    for name, path in kernel_spec_manager(app).find_kernel_specs().items():
        try:
            with open(os.path.join(path, "kernel.json"), encoding="utf-8") as f:
                spec = json.load(f)
            if spec.get("metadata", {}).get("kernel_provisioner", {}).get("provisioner_name") == YARN_PROVISIONER:
                names.append(name)
        except (OSError, ValueError, AttributeError):
            continue
    return names


def check_kernelspecs(app: YarnGatewayApp) -> Iterator[Check]:
    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    for d in app.kernelspec_dirs:
        if not os.path.isdir(d):
            yield Check(FAIL, "kernelspec-dir", f"{d} does not exist (YarnGatewayApp.kernelspec_dirs)")
        elif not os.access(d, os.R_OK | os.X_OK):
            yield Check(FAIL, "kernelspec-dir", f"{d} is not readable")
        else:
            yield Check(OK, "kernelspec-dir", d)
    ksm = kernel_spec_manager(app)
    found = ksm.find_kernel_specs()
    if not found:
        yield Check(FAIL, "kernelspecs", "no kernelspecs found in YarnGatewayApp.kernelspec_dirs")
        return
    factory = KernelProvisionerFactory.instance()
    for name in sorted(found):
        try:
            spec = ksm.get_kernel_spec(name)
        except Exception as exc:
            yield Check(FAIL, f"kernelspec {name}", f"cannot be parsed: {exc}")
            continue
        if not factory.is_provisioner_available(spec):
            prov = spec.metadata.get("kernel_provisioner", {}).get("provisioner_name")
            yield Check(FAIL, f"kernelspec {name}", f"provisioner {prov!r} is not installed")
            continue
        yield from _check_launcher_files(name, spec)
    if app.default_kernel_name.lower() not in found:
        yield Check(WARN, "default-kernel", f"{app.default_kernel_name!r} (YarnGatewayApp.default_kernel_name) "
                    "is not among the kernelspecs")


def check_local_kernels(app: YarnGatewayApp) -> Iterator[Check]:
    """Kernelspecs that run on the gateway host run user code as the gateway's account: only
    for named users, and never on an address other hosts reach."""
    from ..auth.base import is_loopback
    from ..auth.kernelspec_acl import runs_on_gateway_host
    from ..auth.policy import AccessPolicy

    policy = AccessPolicy(parent=app, log=app.log)
    ksm = kernel_spec_manager(app)
    local = []
    for name in sorted(ksm.find_kernel_specs()):
        with contextlib.suppress(Exception):  # unparsable specs are reported by check_kernelspecs
            if runs_on_gateway_host(ksm.get_kernel_spec(name)):
                local.append(name)
    specs = ", ".join(local) if local else "none configured"
    if not policy.local_kernels_enabled:
        yield Check(OK, "local-kernels", f"off (kernelspecs on the gateway host: {specs}; refused and not listed, "
                    "AccessPolicy.local_kernel_users/local_kernel_groups name nobody)")
        return
    who = ", ".join(sorted(policy.local_kernel_users) + [f"group {g}" for g in sorted(policy.local_kernel_groups)])
    if not is_loopback(app.ip):
        yield Check(FAIL, "local-kernels", f"enabled for {who} while listening on {app.ip or '0.0.0.0'!r}, a "
                    "non-loopback address: local kernels run user code as the gateway's own Unix account, which "
                    "can read the token file, keytab and credential cache and so become any user. Remove "
                    "AccessPolicy.local_kernel_users/local_kernel_groups (serve YARN kernelspecs only), or listen "
                    f"on 127.0.0.1 (kernelspecs on the gateway host: {specs})")
    else:
        yield Check(WARN, "local-kernels", f"enabled for {who} on loopback {app.ip} (development use; "
                    f"kernelspecs on the gateway host: {specs})")


def _check_launcher_files(name: str, spec: Any) -> Iterator[Check]:
    from ..kernels.install import find_launcher_file

    prov = spec.metadata.get("kernel_provisioner", {})
    if prov.get("provisioner_name") != YARN_PROVISIONER:
        yield Check(OK, f"kernelspec {name}", spec.display_name)
        return
    config = prov.get("config", {}) or {}
    files = [config.get("launcher", "")] + [p for k in ("py_files", "jars", "files") for p in config.get(k, [])]
    missing = [p for p in files if not p or not (
        os.path.exists(p if os.path.isabs(p) else os.path.join(spec.resource_dir, p))
        or (not os.path.isabs(p) and find_launcher_file(p)))]
    if missing:
        yield Check(FAIL, f"kernelspec {name}", f"launcher file(s) missing: {', '.join(map(repr, missing))}")
    else:
        yield Check(OK, f"kernelspec {name}", f"{spec.display_name} (YARN)")


# -- listening --------------------------------------------------------------------------------
def check_listen(app: YarnGatewayApp) -> Iterator[Check]:
    try:
        infos = socket.getaddrinfo(app.ip or None, app.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _t, _p, _c, addr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            yield Check(WARN, "listen", f"{app.ip}:{app.port} is in use (is the gateway running?)")
        else:
            yield Check(FAIL, "listen", f"cannot bind {app.ip}:{app.port}: {exc.strerror or exc}")
        return
    yield Check(OK, "listen", f"{app.ip}:{app.port} is free")
    if app.certfile:
        try:
            app.ssl_options()
        except (OSError, ValueError) as exc:
            yield Check(FAIL, "tls", f"cannot load {app.certfile} / {app.keyfile or '(key in certfile)'}: {exc}")
        else:
            yield Check(OK, "tls", f"certificate {app.certfile} loads")


# -- session store ----------------------------------------------------------------------------
def check_session_store(app: YarnGatewayApp) -> Iterator[Check]:
    from ..kernels.sessions import STORES, SessionKeeper

    kind = str(trait_value(app, SessionKeeper, "store"))
    if kind == "none":
        yield Check(WARN, "session-store", "none: YARN kernels are lost when the gateway restarts")
        return
    try:
        cls = import_item(STORES.get(kind, kind))
        store = cls(parent=app, log=app.log)
    except Exception as exc:
        yield Check(FAIL, "session-store", f"SessionKeeper.store {kind!r}: {exc}")
        return
    if kind == "directory":
        yield from _check_directory(store)
    elif kind == "zookeeper":
        yield from _check_zookeeper(store)
    else:
        yield Check(OK, "session-store", f"{kind} (not probed)")
        return
    yield _check_record_key(store)


def _check_record_key(store: Any) -> Check:
    from ..kernels.record_mac import inspect_key_file

    path = store.key_path
    problem, fingerprint = inspect_key_file(path)
    if problem:
        return Check(FAIL, "session-record-key", f"{type(store).__name__}.record_key_file: {problem}")
    if fingerprint is None:
        return Check(OK, "session-record-key", f"{path} will be generated at first start (gateways sharing the "
                     "store need the same key: copy it to them)")
    return Check(OK, "session-record-key", f"{path} (fingerprint {fingerprint}: equal on every gateway sharing "
                 "the store)")


def _check_directory(store: Any) -> Iterator[Check]:
    from ..kernels.private_files import directory_problem

    path = str(store.directory)
    existing = path
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        yield Check(FAIL, "session-store", f"DirectoryStore.directory {path}: {existing} is not a directory")
        return
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".yarngw-check-"):
            pass
    except OSError as exc:
        yield Check(FAIL, "session-store", f"DirectoryStore.directory {path}: {existing} is not writable "
                    f"({exc.strerror})")
        return
    if existing != path:
        yield Check(OK, "session-store", f"directory {path} (will be created, mode 0700)")
        return
    problem = directory_problem(os.path.realpath(path))
    if problem:  # the gateway refuses to start with it
        yield Check(FAIL, "session-store", f"DirectoryStore.directory: {problem}")
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o055:
        yield Check(WARN, "session-store", f"directory {path} is readable by group or others (mode {mode:04o}): "
                    f"they can list kernel ids; chmod 700 {path}")
    else:
        yield Check(OK, "session-store", f"directory {path} (mode {mode:04o})")


def _check_zookeeper(store: Any) -> Iterator[Check]:
    from kazoo.client import KazooClient

    from ..kernels.zkstore import world_access

    try:
        store._check_config()  # the ACL the gateway would use: an open one is refused unless allowed
    except ValueError as exc:
        yield Check(FAIL, "session-store", str(exc))
        return
    if store.acl_scheme == "":
        yield Check(WARN, "session-store", f"ZooKeeper {store.hosts}: open ACL (ZooKeeperStore.allow_open_acl): "
                    "anyone who reaches ZooKeeper can read every kernel's key and write session records")
    if store.acl_scheme == "digest" and not store.digest_credentials_file:
        yield Check(WARN, "session-store", "ZooKeeperStore.digest_credentials is set inline: keep it in "
                    "digest_credentials_file (mode 0600) instead")
    timeout = min(float(store.timeout), 10.0)
    kwargs: dict[str, Any] = {}
    if store.acl_scheme == "sasl":
        kwargs["sasl_options"] = {"mechanism": "GSSAPI", "service": "zookeeper"}
    zk = KazooClient(hosts=store.hosts, timeout=timeout, auth_data=store._auth or None, **kwargs)
    opened: list[str] = []
    try:
        zk.start(timeout=timeout)
        for path in (store.root, f"{store.root}/sessions"):
            if zk.exists(path) and world_access(zk.get_acls(path)[0]):
                opened.append(path)
    except Exception as exc:
        yield Check(FAIL, "session-store", f"ZooKeeper {store.hosts}: {exc or type(exc).__name__}")
        return
    finally:
        with contextlib.suppress(Exception):  # best effort: the check's outcome is already known
            zk.stop()
            zk.close()
    if opened and store.acl_scheme:
        yield Check(WARN, "session-store", f"ZooKeeper {store.hosts}: {', '.join(opened)} have an open ACL "
                    f"(world:anyone); the gateway sets the configured {store.acl_scheme} ACL at its next start")
    elif opened:
        yield Check(WARN, "session-store", f"ZooKeeper {store.hosts}: {', '.join(opened)} have an open ACL "
                    "(world:anyone)")
    yield Check(OK, "session-store", f"ZooKeeper {store.hosts} (root {store.root}, ACL "
                f"{store.acl_scheme or 'open'})")
