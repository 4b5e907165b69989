"""TLS for the lab's Redfish BMCs: a lab CA, and per BMC a server certificate for its IP address (openssl).

    python -m lab.tls DIRECTORY NAME IP     # prints the certificate, the key and the CA, one path a line

In DIRECTORY: ``ca.pem``/``ca.key`` (the CA, made on first use) and ``NAME.pem``/``NAME.key``, a certificate
whose subjectAltName is ``IP`` and nothing else, so a client that verifies the host name must use the address.
Idempotent: files are kept while they are valid (the CA while it has a day left; a certificate while it has a
day left, matches its key, the CA verifies it and it names IP) and made anew otherwise. Keys are EC P-256 (made
in milliseconds); every file is readable by its owner only. The fencing integration tests make their CA here too.
"""

import ipaddress
import os
import secrets
import subprocess
import sys
import threading

DAYS = 3650  # a lab's certificates should never expire under it
MIN_SECONDS_LEFT = 86400
NEW_KEY = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes')
# Explicit extensions, as strict verifiers (Python 3.13's default context) want them.
CA_EXTENSIONS = ('basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign',
                 'subjectKeyIdentifier=hash')
SERVER_EXTENSIONS = ('basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature',
                     'extendedKeyUsage=serverAuth', 'subjectKeyIdentifier=hash', 'authorityKeyIdentifier=keyid')


# `lab up` starts the BMCs from several threads: one of them makes the CA, the others wait for it (two CAs made at
# once would leave one's certificate beside the other's key).
_CA_LOCK = threading.Lock()


def ensure_ca(directory):
    """The lab CA in ``directory``, kept if valid, made otherwise; returns the path of ``ca.pem``."""
    cert, key = _paths(directory, 'ca')
    with _CA_LOCK:
        if _valid_pair(cert, key):
            return cert
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _openssl('req', '-x509', *NEW_KEY, '-keyout', key, '-out', cert, '-days', str(DAYS),
                 '-subj', '/CN=kvmha lab CA', *_addext(CA_EXTENSIONS))
    return cert


def ensure_server_certificate(directory, name, ip):
    """``NAME.pem`` and ``NAME.key`` in ``directory`` for IP address ``ip``, signed by the lab CA (made first if
    need be); kept if valid, made otherwise. Returns (certificate path, key path)."""
    ip = str(ipaddress.ip_address(ip))  # refuses a host name: the certificate names an address only
    ca = ensure_ca(directory)
    cert, key = _paths(directory, name)
    if _valid_pair(cert, key) and _verifies(ca, cert) and _names(cert, ip):
        return cert, key
    csr, extensions = f'{cert}.csr', f'{cert}.ext'
    _openssl('req', *NEW_KEY, '-keyout', key, '-out', csr, '-subj', f'/CN={name}')
    with open(extensions, 'w', encoding='utf-8') as f:
        f.write('\n'.join((*SERVER_EXTENSIONS, f'subjectAltName=IP:{ip}')) + '\n')
    try:
        _openssl('x509', '-req', '-in', csr, '-CA', ca, '-CAkey', _paths(directory, 'ca')[1], '-out', cert,
                 '-days', str(DAYS), '-set_serial', f'0x{secrets.token_hex(16)}', '-extfile', extensions)
    finally:
        for path in (csr, extensions):
            os.unlink(path)
    return cert, key


def _paths(directory, name):
    return os.path.join(directory, f'{name}.pem'), os.path.join(directory, f'{name}.key')


def _addext(extensions):
    return [arg for extension in extensions for arg in ('-addext', extension)]


def _valid_pair(cert, key):
    """Both files exist, the certificate has a day left, and the key is the certificate's."""
    if not (os.path.isfile(cert) and os.path.isfile(key)):
        return False
    if _run('x509', '-in', cert, '-noout', '-checkend', str(MIN_SECONDS_LEFT)).returncode != 0:
        return False
    public_keys = (_run('x509', '-in', cert, '-noout', '-pubkey'), _run('pkey', '-in', key, '-pubout'))
    return all(r.returncode == 0 for r in public_keys) and public_keys[0].stdout == public_keys[1].stdout


def _verifies(ca, cert):
    return _run('verify', '-CAfile', ca, cert).returncode == 0


def _names(cert, ip):
    """The certificate's subjectAltName is exactly IP address ``ip``."""
    text = _run('x509', '-in', cert, '-noout', '-ext', 'subjectAltName').stdout
    entries = [entry.strip() for line in text.splitlines()[1:] for entry in line.split(',')]
    return [ipaddress.ip_address(e.split(':', 1)[1]) if e.startswith('IP Address:') else e
            for e in entries] == [ipaddress.ip_address(ip)]


def _run(*args):
    # umask 077: keys (and certificates, which nobody else needs) are created readable by the owner only.
    return subprocess.run(['openssl', *args], capture_output=True, text=True, check=False, umask=0o077)


def _openssl(*args):
    result = _run(*args)
    if result.returncode != 0:
        raise RuntimeError(f'openssl {args[0]} failed: {result.stderr.strip()}')


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(__doc__.split('\n\n', maxsplit=2)[1].strip(), file=sys.stderr)
        return 2
    directory, name, ip = args
    try:
        paths = (*ensure_server_certificate(directory, name, ip), _paths(directory, 'ca')[0])
    except (ValueError, RuntimeError, OSError) as e:
        print(f'lab.tls: {e}', file=sys.stderr)
        return 1
    print(*paths, sep='\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
