"""The embedded lab cluster: hypervisor containers, BMCs, shared store and fault injection (see docs/LAB.md).

    from lab import Lab, LabError

`Lab` and `LabError` are loaded on first use, so that `python -m lab.bmc` (standalone BMC) and the
supervisor do not import the whole lab.
"""


def __getattr__(name):
    if name == 'Lab':
        from lab.api import Lab
        return Lab
    if name == 'LabError':
        from lab.util import LabError
        return LabError
    raise AttributeError(name)
