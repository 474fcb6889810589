"""Ambari command script of YARN_GATEWAY_SERVER: install, configure, start, stop, status.

The daemon runs in its pid-file mode (``--pid-file``): Ambari has no supervisor, it starts
the process in the background and asks ``status`` about the pid file.
"""
# Ambari 2.7 agents (HDP 3.x) run these scripts on Python 2.7: no f-strings, no annotations.
# ruff: noqa: UP031


import os
import signal
import time

import gateway_config
from resource_management.core.exceptions import Fail
from resource_management.core.resources.system import Directory, Execute, File
from resource_management.core.shell import quote_bash_args
from resource_management.libraries.functions.check_process_status import check_process_status
from resource_management.libraries.script.script import Script


def _read_pid(pid_file):
    try:
        with open(pid_file) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class YarnGatewayServer(Script):
    def install(self, env):
        self.install_packages(env)
        self.configure(env)

    def configure(self, env):
        import params
        env.set_params(params)
        Directory(params.conf_dir, owner='root', group=params.gw_group, mode=0o750, create_parents=True)
        for d in (params.log_dir, params.pid_dir, params.state_dir):
            Directory(d, owner=params.gw_user, group=params.gw_group, mode=0o750, create_parents=True)
        File(params.config_file, content=gateway_config.render(params), owner='root', group=params.gw_group,
             mode=0o640)
        # (Re)install the kernelspecs with this cluster's queue and Python.
        argv = [params.gw_bin, 'install-kernelspecs', '--dest', params.kernelspec_dir, '--force',
                '--name', 'spark_python_yarn_cluster']
        if params.kernel_python:
            argv += ['--python', params.kernel_python]
        if params.queue:
            argv += ['--queue', params.queue]
        Execute(tuple(argv), user='root')

    def start(self, env, upgrade_type=None):
        import params
        env.set_params(params)
        self.configure(env)
        if _alive(_read_pid(params.pid_file)):
            return
        cmd = 'nohup %s >> %s 2>&1 &' % (
            quote_bash_args([params.gw_bin, '--config=' + params.config_file, '--pid-file=' + params.pid_file]),
            quote_bash_args([params.log_file]))
        Execute(cmd, user=params.gw_user, cwd=params.state_dir,
                environment={'HADOOP_CONF_DIR': params.hadoop_conf_dir, 'SPARK_HOME': params.spark_home})
        deadline = time.time() + 60
        while time.time() < deadline:
            if _alive(_read_pid(params.pid_file)):
                return
            time.sleep(0.25)
        raise Fail('yarn-gateway did not start within 60 s: see ' + params.log_file)

    def stop(self, env, upgrade_type=None):
        import params
        env.set_params(params)
        pid = _read_pid(params.pid_file)
        if _alive(pid):
            # SIGTERM: graceful stop; kernels in YARN keep running (shutdown_kernels_on_stop = False).
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 60
            while _alive(pid) and time.time() < deadline:
                time.sleep(0.25)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        File(params.pid_file, action='delete')

    def status(self, env):
        import status_params
        env.set_params(status_params)
        check_process_status(status_params.pid_file)


if __name__ == '__main__':
    YarnGatewayServer().execute()
