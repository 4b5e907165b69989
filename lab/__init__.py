"""The embedded lab cluster: hypervisor containers, BMCs, shared store and fault injection (see docs/LAB.md)."""
