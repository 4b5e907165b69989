"""Runs INSIDE a lab host (Debian's /usr/bin/python3 with python3-libvirt), fed a JSON request on stdin.

One call does all of a host's guest work in one libvirt connection:
  {"define": [{"xml": ..., "start": bool}], "metadata": [{"name": .., "element": "<ha .../>" or null}],
   "remove": [names]}
and prints {name: {"state": .., "uuid": ..}} for every domain defined on the host afterwards.
Kept free of lab imports: it is sent as source text, not imported.
"""

import json
import sys

import libvirt

HA_NAMESPACE = 'http://kvmha.invalid/xmlns/ha/1'
STATES = {libvirt.VIR_DOMAIN_RUNNING: 'running', libvirt.VIR_DOMAIN_BLOCKED: 'running',
          libvirt.VIR_DOMAIN_PAUSED: 'paused', libvirt.VIR_DOMAIN_SHUTDOWN: 'shutting-down',
          libvirt.VIR_DOMAIN_SHUTOFF: 'shut-off', libvirt.VIR_DOMAIN_CRASHED: 'crashed',
          libvirt.VIR_DOMAIN_PMSUSPENDED: 'suspended'}


def define(conn, item):
    dom = conn.defineXML(item['xml'])
    if item.get('start') and not dom.isActive():
        dom.create()


def lookup(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None  # not defined on this host


def set_metadata(conn, item):
    """Set (or remove, element null) the HA marker, on the running domain too so readers of live XML see it."""
    dom = lookup(conn, item['name'])
    if not dom:
        return
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
    element = item['element']
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, 'kvmha' if element else None, HA_NAMESPACE, flags)


def remove(conn, name):
    dom = lookup(conn, name)
    if not dom:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def main():
    request = json.load(sys.stdin)
    conn = libvirt.open('qemu:///system')
    for item in request.get('define', []):
        define(conn, item)
    for item in request.get('metadata', []):
        set_metadata(conn, item)
    for name in request.get('remove', []):
        remove(conn, name)
    domains = {dom.name(): {'state': STATES.get(dom.state()[0], 'unknown'), 'uuid': dom.UUIDString()}
               for dom in conn.listAllDomains()}
    print(json.dumps(domains))


main()
