"""Packaging for yarn-gateway."""

from setuptools import find_packages, setup

setup(
    name="yarn-gateway",
    version="0.1.0",
    description="Jupyter kernels in YARN cluster mode for desktop notebooks (a kernel gateway for Hadoop edge nodes)",
    python_requires=">=3.9",
    packages=find_packages(include=["yarn_gateway", "yarn_gateway.*"])
    + ["yarn_gateway.kernelspecs", "yarn_gateway_launchers", "yarn_gateway_launchers.R"],
    package_dir={
        "yarn_gateway.kernelspecs": "kernelspecs",
        "yarn_gateway_launchers": "launchers/python",
        "yarn_gateway_launchers.R": "launchers/R",
    },
    package_data={
        "yarn_gateway.kernelspecs": ["*/kernel.json", "*/logo-*", "*/*.js", "*/*.css"],
        # The Toree launcher jar (and Toree's assembly) are built by `make scala-launcher`.
        "yarn_gateway_launchers": ["*.py", "*.jar"],
        "yarn_gateway_launchers.R": ["*.R"],
    },
    install_requires=[
        "tornado>=6.4,<7",  # relay/channels.py writes raw websocket frames through tornado 6 internals
        "jupyter_client>=8.6",
        "jupyter_core>=5.7",
        "pyzmq>=25",
        "traitlets>=5.14",
        "pycryptodome>=3.20",
        "pynacl>=1.5",  # libsodium's crypto_box for the relay's CurveZMQ (relay/curve.py)
        "psutil>=5.9",
        "requests>=2.31",
        "yarn-api-client==1.0.3",
        # Kerberos is not optional on a Hadoop edge node; ZooKeeper backs active/active gateways.
        "pyspnego>=0.10",
        "requests-kerberos>=0.15",
        "gssapi>=1.8",
        "kazoo>=2.10",
        "prometheus_client>=0.17",
    ],
    extras_require={
        # Kept for installers that name them (RPM, Ansible); everything is in install_requires.
        "kerberos": [],
        "zookeeper": [],
    },
    entry_points={
        "console_scripts": [
            "yarn-gateway=yarn_gateway.app:main",
        ],
        "jupyter_client.kernel_provisioners": [
            "yarn-provisioner=yarn_gateway.provisioners.yarn:YarnProvisioner",
        ],
    },
)
