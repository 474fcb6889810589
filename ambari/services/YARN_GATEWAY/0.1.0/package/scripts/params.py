"""Settings of the YARN Gateway server, from the Ambari command's configurations."""

from resource_management.libraries.script.script import Script

config = Script.get_config()

# yarn-gateway-env
gw_user = config['configurations']['yarn-gateway-env']['yarn_gateway_user']
gw_group = config['configurations']['yarn-gateway-env']['yarn_gateway_group']
gw_home = config['configurations']['yarn-gateway-env']['yarn_gateway_home']
conf_dir = config['configurations']['yarn-gateway-env']['conf_dir']
log_dir = config['configurations']['yarn-gateway-env']['log_dir']
pid_dir = config['configurations']['yarn-gateway-env']['pid_dir']
state_dir = config['configurations']['yarn-gateway-env']['state_dir']

# yarn-gateway-site
port = int(config['configurations']['yarn-gateway-site']['port'])
ip = config['configurations']['yarn-gateway-site']['ip']
certfile = config['configurations']['yarn-gateway-site']['certfile']
keyfile = config['configurations']['yarn-gateway-site']['keyfile']
authenticator = config['configurations']['yarn-gateway-site']['authenticator']
token_file = config['configurations']['yarn-gateway-site']['token_file']
admin_users = config['configurations']['yarn-gateway-site']['admin_users']
rm_endpoints = config['configurations']['yarn-gateway-site']['rm_endpoints']
hadoop_conf_dir = config['configurations']['yarn-gateway-site']['hadoop_conf_dir']
spark_home = config['configurations']['yarn-gateway-site']['spark_home']
port_range = config['configurations']['yarn-gateway-site']['port_range']
response_advertise_host = config['configurations']['yarn-gateway-site']['response_advertise_host']
queue = config['configurations']['yarn-gateway-site']['queue']
kernel_python = config['configurations']['yarn-gateway-site']['kernel_python']
kerberos_principal = config['configurations']['yarn-gateway-site']['kerberos_principal']
kerberos_keytab = config['configurations']['yarn-gateway-site']['kerberos_keytab']
http_keytab = config['configurations']['yarn-gateway-site']['http_keytab']

security_enabled = config['configurations']['cluster-env']['security_enabled']

gw_bin = gw_home + '/venv/bin/yarn-gateway'
kernelspec_dir = gw_home + '/kernels'
config_file = conf_dir + '/yarn_gateway_config.py'
pid_file = pid_dir + '/yarn-gateway.pid'
log_file = log_dir + '/yarn-gateway.log'
