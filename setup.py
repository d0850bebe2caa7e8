"""Ships the top-level conf/ inside the wheel as zoo/conf: zoo.create_model works when installed."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["zoo*"]), "zoo.conf"],
    package_dir={"zoo.conf": "conf"},
    package_data={"zoo.conf": ["*.yaml", "*/*.yaml"]},
)
