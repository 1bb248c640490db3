"""Exists only to hand cffi's builder to setuptools; all metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["native/build_sha256d.py:ffibuilder"])
