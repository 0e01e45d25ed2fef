"""Everything is declared in setup.cfg; this file lets older pip versions install the project."""

from setuptools import setup

setup()
