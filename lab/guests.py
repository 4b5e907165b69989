"""Guests: tiny qemu TCG domains whose disks on the shared store really change every second.

Each guest boots guest_boot.asm from a raw 1 MiB image on the store (cache='none': the guest never flushes,
and this kernel's tmpfs accepts O_DIRECT). The domain XML carries the HA marker in libvirt metadata.
Guest work on a host goes through remote_libvirt.py, run inside the host with one libvirt connection.
"""

import glob
import json
import os
import re
import threading
import uuid
from xml.sax.saxutils import quoteattr

from lab import config, container
from lab.util import LabError, run

HERE = os.path.dirname(os.path.abspath(__file__))
BOOT_ASM = os.path.join(HERE, 'guest_boot.asm')
REMOTE_SCRIPT = os.path.join(HERE, 'remote_libvirt.py')
IMAGE_BYTES = 1024 * 1024
SECTOR_BYTES = 512
BOOT_SIGNATURE = b'\x55\xaa'
GROUP_RE = re.compile(r'^[A-Za-z0-9_.-]{0,64}$')
DEFAULT_PRIORITY = 50
UUID_NAMESPACE = uuid.UUID('6b1a0c52-4b7e-4c52-9a43-6b766d68612d')  # fixed: same name, same UUID, every `up`

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <metadata>{metadata}</metadata>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='{image}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def default_names(hosts, per_host):
    """{guest: home host}: g1..gM on h1, the next M on h2, and so on."""
    return {f'g{i * per_host + j + 1}': host for i, host in enumerate(hosts) for j in range(per_host)}


def new_guest(host, priority=DEFAULT_PRIORITY, group='', ha=True):
    return {'host': host, 'priority': priority, 'group': group, 'ha': ha}


def validate(name, priority, group):
    if not config.GUEST_RE.match(name):
        raise LabError(f'bad guest name {name!r}: lower-case letters, digits and "-", starting with a letter')
    if not isinstance(priority, int) or not 0 <= priority <= 100:
        raise LabError(f'bad priority {priority!r}: an integer from 0 to 100')
    if not GROUP_RE.match(group):
        raise LabError(f'bad group {group!r}: up to 64 of A-Z a-z 0-9 _ . -')


def guest_uuid(name):
    return str(uuid.uuid5(UUID_NAMESPACE, name))


def image_path(name):
    return f'{config.IMAGES}/{name}.img'


def ha_element(guest):
    """The HA marker element for setMetadata (prefix and namespace are added by libvirt), None if not HA."""
    if not guest['ha']:
        return None
    return f'<ha priority="{guest["priority"]}" group={quoteattr(guest["group"])}/>'


def domain_xml(name, guest):
    metadata = ''
    if guest['ha']:
        metadata = (f'<{config.HA_PREFIX}:ha xmlns:{config.HA_PREFIX}="{config.HA_NAMESPACE}" '
                    f'priority="{guest["priority"]}" group={quoteattr(guest["group"])}/>')
    return DOMAIN_XML.format(name=name, uuid=guest_uuid(name), metadata=metadata, image=image_path(name))


def boot_sector():
    """The guests' boot sector, assembled once per lab.

    `up` provisions the hosts in parallel threads, each asking for it at once: nasm writes to a file of its own
    that replaces the shared one whole, so no caller can read it half-written (an empty read made a zeroed disk
    whose guest never booted, and the lab stage's disk test failed now and then).
    """
    target = f'{config.RUN}/guest_boot.bin'
    if not os.path.exists(target):
        partial = f'{target}.{os.getpid()}.{threading.get_ident()}'
        run(['nasm', '-f', 'bin', '-o', partial, BOOT_ASM], timeout=30)
        os.replace(partial, target)
    with open(target, 'rb') as f:
        sector = f.read()
    if len(sector) != SECTOR_BYTES or sector[-2:] != BOOT_SIGNATURE:
        raise LabError(f'{target}: not a boot sector ({len(sector)} bytes)')
    return sector


def ensure_image(name):
    """Create the guest's disk if missing (an existing disk is a running guest's: never overwrite it)."""
    path = image_path(name)
    if os.path.exists(path):
        return
    tmp = f'{path}.new'
    with open(tmp, 'wb') as f:
        f.write(boot_sector())
        f.truncate(IMAGE_BYTES)
    os.replace(tmp, path)


def remove_image(name):
    if os.path.exists(image_path(name)):
        os.unlink(image_path(name))


def libvirt_call(host, define=(), metadata=(), remove=(), timeout=60):
    """One remote_libvirt.py run inside host; returns {domain: {state, uuid}} defined there afterwards."""
    request = {'define': list(define), 'metadata': list(metadata), 'remove': list(remove)}
    with open(REMOTE_SCRIPT, encoding='utf-8') as f:
        script = f.read()
    result = container.execute(host, [config.HOST_PYTHON, '-c', script], input=json.dumps(request),
                               timeout=timeout)
    return json.loads(result.stdout)


def provision(host, guests, remove=()):
    """Define and start guests ({name: guest}) on host, in the same call removing the domains named in remove."""
    for name in guests:
        ensure_image(name)
    items = [{'xml': domain_xml(name, guest), 'start': True} for name, guest in guests.items()]
    return libvirt_call(host, define=items, remove=remove)


_QEMU_GUEST = re.compile(r'-name\s+guest=([^,\s]+)')
_HOST_CGROUP = re.compile(r'freezer:/' + config.CGROUP_PARENT + r'/(h\d+)')


def copies():
    """{guest: [host, ...]} from every qemu process on the machine, frozen ones included.

    Counted from the processes, not from libvirt: a frozen host cannot be asked, yet its guests still hold their
    disks, and the point of the question is whether any guest runs twice.
    """
    found = {}
    for proc in glob.glob('/proc/[0-9]*'):
        try:
            with open(proc + '/cmdline', 'rb') as f:
                cmdline = f.read().replace(b'\0', b' ').decode(errors='replace')
            if 'qemu-system' not in cmdline:
                continue
            with open(proc + '/cgroup', encoding='utf-8') as f:
                cgroup = f.read()
        except OSError:
            continue  # the process ended while we looked
        name, host = _QEMU_GUEST.search(cmdline), _HOST_CGROUP.search(cgroup)
        if name and host:
            found.setdefault(name.group(1), []).append(host.group(1))
    return {guest: sorted(hosts) for guest, hosts in found.items()}
