# Copyright: kvmha.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading the running domains from libvirt: the Python binding, ``virsh``, or nothing."""

from __future__ import annotations

import subprocess

from ._errors import ErrorKind, KvmhaError
from ._config import ConfigError
from ._domains import _manifest_from


class LibvirtUnavailable(KvmhaError):
    """libvirt could not be asked (daemon down, refused, timed out)."""

    kind = ErrorKind.LIBVIRT


class BindingSource:
    """Reads running domains through the libvirt Python binding, over one read-only connection."""

    method = "libvirt"

    def __init__(self, libvirt_module, uri: str):
        self.libvirt = libvirt_module
        self.uri = uri
        self.conn = None
        # Without this, libvirt prints every error to stderr on top of raising it.
        libvirt_module.registerErrorHandler(lambda _ctx, _err: None, None)

    def _drop(self):
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except self.libvirt.libvirtError:
                pass

    def refresh(self, ha_domains) -> dict:
        lv = self.libvirt
        try:
            if self.conn is None:
                self.conn = lv.openReadOnly(self.uri)
            domains = self.conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            xmls, by_uuid = [], {}
            for dom in domains:
                try:
                    uuid = dom.UUIDString()
                    xmls.append((uuid, dom.XMLDesc(0)))
                    by_uuid[uuid] = dom
                except lv.libvirtError as err:
                    if err.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                        continue  # went away between listing and reading
                    raise
        except lv.libvirtError as err:
            self._drop()
            raise LibvirtUnavailable("libvirt %s: %s" % (self.uri, err.get_error_message() or err)) from err

        def inactive(uuid, live):
            dom = by_uuid.get(uuid)
            try:
                if dom is not None and dom.isPersistent():
                    return dom.XMLDesc(lv.VIR_DOMAIN_XML_INACTIVE)
            except lv.libvirtError:
                pass
            return live

        return _manifest_from(xmls, ha_domains, inactive)

    def close(self):
        self._drop()


class VirshSource:
    """Reads running domains with ``virsh --readonly``, each call under a timeout (the process is killed)."""

    method = "virsh"

    def __init__(self, virsh: str, uri: str, timeout: float):
        self.virsh = virsh
        self.uri = uri
        self.timeout = timeout

    def _run(self, *args) -> str:
        argv = [self.virsh, "--quiet", "--readonly", "-c", self.uri] + list(args)
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise LibvirtUnavailable("virsh %s: no answer within %.1f s" % (" ".join(args), self.timeout)) from None
        except OSError as err:
            raise LibvirtUnavailable("cannot run %s: %s" % (self.virsh, err.strerror or err)) from None
        if done.returncode != 0:
            raise LibvirtUnavailable("virsh %s: %s" % (" ".join(args), done.stderr.decode("utf-8", "replace").strip()[:300]))
        return done.stdout.decode("utf-8", "replace")

    def refresh(self, ha_domains) -> dict:
        uuids = [line.strip() for line in self._run("list", "--uuid").splitlines() if line.strip()]
        xmls = []
        for uuid in uuids:
            try:
                xmls.append((uuid, self._run("dumpxml", uuid)))
            except LibvirtUnavailable as err:
                if "ailed to get domain" in str(err) or "no domain" in str(err).lower():
                    continue  # went away between listing and reading
                raise

        def inactive(uuid, live):
            try:
                return self._run("dumpxml", "--inactive", uuid)
            except LibvirtUnavailable:
                return live

        return _manifest_from(xmls, ha_domains, inactive)

    def close(self):
        pass


class NoSource:
    method = "none"

    def refresh(self, ha_domains) -> dict:
        return {"vms": [], "xml": {}, "allocated": {"mem_mib": 0, "vcpus": 0}, "warnings": []}

    def close(self):
        pass


def make_source(conf: dict):
    lv = conf["libvirt"]
    if lv["method"] == "none":
        return NoSource()
    if lv["method"] in ("auto", "binding"):
        try:
            import libvirt  # pylint: disable=import-outside-toplevel
        except ImportError:
            if lv["method"] == "binding":
                raise ConfigError("libvirt.method is 'binding' but the libvirt Python binding is not installed") from None
        else:
            return BindingSource(libvirt, lv["uri"])
    return VirshSource(lv["virsh"], lv["uri"], lv["timeout"])
