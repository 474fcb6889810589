"""Packaging for yarn-gateway."""

from setuptools import find_packages, setup

setup(
    name="yarn-gateway",
    version="0.1.0",
    description="Jupyter kernels in YARN cluster mode for desktop notebooks (a kernel gateway for Hadoop edge nodes)",
    python_requires=">=3.9",
    packages=find_packages(include=["yarn_gateway", "yarn_gateway.*"])
    + ["yarn_gateway.kernelspecs", "yarn_gateway_launchers"],
    package_dir={
        "yarn_gateway.kernelspecs": "kernelspecs",
        "yarn_gateway_launchers": "launchers/python",
    },
    package_data={
        "yarn_gateway.kernelspecs": ["*/*"],
        "yarn_gateway_launchers": ["*.py"],
    },
    install_requires=[
        "tornado>=6.4",
        "jupyter_client>=8.6",
        "jupyter_core>=5.7",
        "pyzmq>=25",
        "traitlets>=5.14",
        "pycryptodome>=3.20",
        "psutil>=5.9",
        "requests>=2.31",
        "yarn-api-client==1.0.3",
    ],
    extras_require={
        "kerberos": ["pyspnego>=0.10", "requests-kerberos>=0.15", "gssapi>=1.8"],
        "zookeeper": ["kazoo>=2.10"],
    },
    entry_points={
        "console_scripts": [
            "yarn-gateway=yarn_gateway.app:main",
            "yarn-gateway-minicluster=yarn_gateway.minicluster.cli:main",
        ],
        "jupyter_client.kernel_provisioners": [
            "yarn-provisioner=yarn_gateway.provisioners.yarn:YarnProvisioner",
        ],
    },
)
