# /etc/yarn-gateway/yarn_gateway_config.py: packaged configuration of yarn-gateway.
#
# Simple settings come from the environment (/etc/sysconfig/yarn-gateway, read by systemd);
# set anything else below. `yarn-gateway generate-config` lists every setting.
# This file is %config(noreplace): upgrades keep your edits.
import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
env = os.environ.get

# -- where desktops connect ---------------------------------------------------------------
c.YarnGatewayApp.ip = env("YARN_GATEWAY_IP", "0.0.0.0")
c.YarnGatewayApp.port = int(env("YARN_GATEWAY_PORT", "8888"))
if env("YARN_GATEWAY_CERTFILE"):
    c.YarnGatewayApp.certfile = env("YARN_GATEWAY_CERTFILE")
    c.YarnGatewayApp.keyfile = env("YARN_GATEWAY_KEYFILE", "")

# -- kernelspecs (installed by /opt/yarn-gateway/libexec/yarn-gateway-setup) ----------------
c.YarnGatewayApp.kernelspec_dirs = [env("YARN_GATEWAY_KERNELSPEC_DIR", "/opt/yarn-gateway/kernels")]
c.YarnGatewayApp.default_kernel_name = "spark_python_yarn_cluster"

# -- who is calling -----------------------------------------------------------------------
c.YarnGatewayApp.authenticator_class = env("YARN_GATEWAY_AUTHENTICATOR", "token")
c.TokenAuthenticator.token_file = env("YARN_GATEWAY_TOKEN_FILE", "/etc/yarn-gateway/tokens")
# Users who may start kernels for others (KERNEL_USERNAME) and see every kernel.
# c.AccessPolicy.admin_users = {"hue"}

# -- YARN ---------------------------------------------------------------------------------
# HADOOP_CONF_DIR and SPARK_HOME come from the environment (YarnServices defaults).
c.YarnServices.port_range = env("YARN_GATEWAY_PORT_RANGE", "0..0")
if env("YARN_GATEWAY_ADVERTISE_HOST"):
    c.YarnServices.response_advertise_host = env("YARN_GATEWAY_ADVERTISE_HOST")
if env("YARN_GATEWAY_RM_ENDPOINTS"):
    c.YarnServices.rm_endpoints = [u.strip() for u in env("YARN_GATEWAY_RM_ENDPOINTS", "").split(",") if u.strip()]

# -- Kerberos -----------------------------------------------------------------------------
if env("YARN_GATEWAY_KERBEROS_PRINCIPAL"):
    c.YarnServices.rm_auth = "kerberos"
    c.KerberosLogin.principal = env("YARN_GATEWAY_KERBEROS_PRINCIPAL")
    c.KerberosLogin.keytab = env("YARN_GATEWAY_KERBEROS_KEYTAB", "/etc/security/keytabs/yarngw.service.keytab")
if env("YARN_GATEWAY_HTTP_KEYTAB"):
    c.KerberosAuthenticator.keytab = env("YARN_GATEWAY_HTTP_KEYTAB")

# -- kernels ------------------------------------------------------------------------------
# Kernels live in YARN: stopping or restarting the service must not end them.
c.KernelRegistry.shutdown_kernels_on_stop = False
