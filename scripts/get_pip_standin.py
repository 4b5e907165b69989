"""Offline stand-in for get-pip.py, used by ansible-test to bootstrap pip in its venvs.

ansible-test runs ``get_pip_<ver>.py <pip args>``; we bootstrap pip from the interpreter's bundled
ensurepip wheel and let that pip install the requested version from the configured package index.
"""
import subprocess
import sys

ARGS = sys.argv[1:]
PIP_ARGS = [a for a in ARGS if a not in ("--no-setuptools", "--no-wheel")]

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + PIP_ARGS)
if "--no-setuptools" in ARGS:
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "setuptools"])
