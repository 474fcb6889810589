"""What STATUS needs (Ambari runs it often, with a reduced command)."""

from resource_management.libraries.script.script import Script

config = Script.get_config()

pid_dir = config['configurations']['yarn-gateway-env']['pid_dir']
pid_file = pid_dir + '/yarn-gateway.pid'
