# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This module_utils is PRIVATE: only the kvmha.cluster collection may use it, and it may change at any time.
"""The module wrapper and the one skeleton every kvmha.cluster module uses.

``KvmhaModule`` wraps (does not subclass) ``AnsibleModule``: it exposes the few things modules need and owns
the single failure path, turning a ``KvmhaError`` raised anywhere below into ``fail_json`` with the error's
``kind`` (``error_kind``, one of ``_errors.ErrorKind``) and partial ``result``. Anything else is a bug and is
left to ansible-core 2.19's own structured error reporting, traceback included.

Every module has the same shape::

    ARGUMENT_SPEC = merge_specs(SHARED_SPEC, {...})     # the options, built in one place (_argspec)

    def run(module: KvmhaModule) -> dict:             # the work: raises KvmhaError, returns the result
        ...

    def main():
        run_module(ARGUMENT_SPEC, run, libraries=(("pyghmi", PYGHMI_IMPORT_ERROR),))
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ._errors import ErrorKind, KvmhaError


class KvmhaModule:
    def __init__(self, argument_spec: dict, **kwargs):
        kwargs.setdefault("supports_check_mode", True)
        self._module = AnsibleModule(argument_spec=argument_spec, **kwargs)

    @property
    def params(self) -> dict:
        return self._module.params

    @property
    def check_mode(self) -> bool:
        return self._module.check_mode

    @property
    def diff_mode(self) -> bool:
        return self._module._diff

    def warn(self, msg: str) -> None:
        self._module.warn(msg)

    def get_bin_path(self, name: str, required: bool = False) -> str | None:
        return self._module.get_bin_path(name, required=required)

    def require_library(self, name: str, import_error: Exception | None) -> None:
        """Fail with Ansible's standard message when an optional Python library is missing."""
        if import_error is not None:
            self._module.fail_json(**missing_library_failure(name, import_error))

    def fail_json(self, msg: str, **result) -> None:
        self._module.fail_json(msg=msg, **result)

    def exit_json(self, **result) -> None:
        self._module.exit_json(**result)

    def fail_from_exception(self, error: KvmhaError) -> None:
        self._module.fail_json(**failure_result(error))

    def run(self, action) -> None:
        """Exit with ``action()``'s result dict, or fail with the collection error it raised."""
        try:
            result = action()
        except KvmhaError as error:
            self.fail_from_exception(error)
        else:
            self.exit_json(**result)


def run_module(argument_spec: dict, action, libraries=(), **kwargs) -> None:
    """The one module skeleton: parse the options, check the libraries, exit with ``action(module)``'s result dict
    or fail with the ``KvmhaError`` it raised. ``libraries`` are (name, import error or None) pairs; ``kwargs`` go
    to ``AnsibleModule`` (``required_if``, ``required_together`` ...)."""
    module = KvmhaModule(argument_spec=argument_spec, **kwargs)
    for name, import_error in libraries:
        module.require_library(name, import_error)
    module.run(lambda: action(module))


def failure_result(error: KvmhaError) -> dict:
    """What a run that raised ``error`` fails with: its partial result (``changed`` false unless it says otherwise),
    its message and its kind."""
    result = dict(error.result)
    result.setdefault("changed", False)
    return dict(result, msg=error.msg, error_kind=error.kind)


def missing_library_failure(name: str, import_error: Exception) -> dict:
    """What a run fails with when the optional library ``name`` could not be imported: Ansible's standard message."""
    return {"msg": missing_required_lib(name), "exception": _format(import_error), "changed": False,
            "error_kind": ErrorKind.MISSING_LIBRARY.value}


def _format(error: Exception) -> str:
    import traceback

    return "".join(traceback.format_exception(type(error), error, error.__traceback__))
