"""The Redfish face of the lab's BMC simulator (lab/bmc.py): a minimal DMTF Redfish service over HTTPS.

It serves one ComputerSystem whose power is the BMC's ``Chassis``, the same one the IPMI face drives, with the
same user and password file (re-read at every request, so the lab's ``bmc-wrong-password`` fault hits both faces)
and the same ``power ...`` log lines. Standard library only (``http.server`` and ``ssl``).

* ``GET /redfish`` and ``GET /redfish/v1`` (the service root) need no credentials, as the Redfish specification
  requires; everything else needs HTTP Basic authentication (401 otherwise). No sessions.
* ``GET /redfish/v1/Systems`` lists the one system, ``GET /redfish/v1/Systems/1`` tells its ``PowerState``
  (``On``/``Off``) and its ``#ComputerSystem.Reset`` action.
* ``POST`` of the action with ``{"ResetType": ...}``: ``On``, ``ForceOff``, ``GracefulShutdown``, and
  ``ForceRestart``/``PowerCycle``, which are refused (409) while the chassis is off, like the IPMI face's reset
  and cycle. 204 on success, 400 for a body that is not JSON or an unknown ResetType, 404 for an unknown path,
  405 for a method the resource does not offer.

Requests are HTTP/1.1 with keep-alive; each connection has its own thread, and its TLS handshake happens there,
so a client that connects and never speaks holds up nobody.
"""

import base64
import hmac
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE_ROOT = '/redfish/v1'
SYSTEMS = SERVICE_ROOT + '/Systems'
SYSTEM = SYSTEMS + '/1'
RESET = SYSTEM + '/Actions/ComputerSystem.Reset'
# ResetType -> the Chassis command the IPMI face runs for the same request.
RESET_COMMANDS = {'On': 'on', 'ForceOff': 'off', 'GracefulShutdown': 'soft', 'ForceRestart': 'reset',
                  'PowerCycle': 'cycle'}
POWER_STATES = {'on': 'On', 'off': 'Off'}
METHODS = {'/redfish': 'GET', SERVICE_ROOT: 'GET', SYSTEMS: 'GET', SYSTEM: 'GET', RESET: 'POST'}  # resources
PUBLIC = ('/redfish', SERVICE_ROOT)  # readable without credentials (Redfish specification, "Service root")
MAX_BODY = 64 * 1024  # a Reset body is a few bytes
CONNECTION_TIMEOUT = 30  # seconds a connection may stay silent (handshake included) before it is dropped
REGISTRY = 'Base.1.16'


def service_root(uuid):
    return {'@odata.id': SERVICE_ROOT, '@odata.type': '#ServiceRoot.v1_5_0.ServiceRoot', 'Id': 'RootService',
            'Name': 'kvmha lab BMC', 'RedfishVersion': '1.6.0', 'UUID': uuid,
            'Systems': {'@odata.id': SYSTEMS}}


def systems():
    return {'@odata.id': SYSTEMS, '@odata.type': '#ComputerSystemCollection.ComputerSystemCollection',
            'Name': 'Computer System Collection', 'Members@odata.count': 1, 'Members': [{'@odata.id': SYSTEM}]}


def system(power_state):
    return {'@odata.id': SYSTEM, '@odata.type': '#ComputerSystem.v1_10_0.ComputerSystem', 'Id': '1',
            'Name': 'lab host', 'SystemType': 'Physical', 'PowerState': POWER_STATES[power_state],
            'Actions': {'#ComputerSystem.Reset': {
                'target': RESET, 'ResetType@Redfish.AllowableValues': list(RESET_COMMANDS)}}}


def error(message_id, message):
    """A Redfish error body (specification, "Error responses")."""
    return {'error': {'code': f'{REGISTRY}.GeneralError', 'message': message, '@Message.ExtendedInfo': [
        {'@odata.type': '#Message.v1_1_1.Message', 'MessageId': f'{REGISTRY}.{message_id}', 'Message': message}]}}


class RedfishServer(ThreadingHTTPServer):
    """HTTPS on (address, port) for one ``chassis`` (lab.bmc.Chassis: ``state()`` -> "on"/"off",
    ``command(name)`` -> "ok"/"refused"/"failed"); ``authdata.get(user)`` -> the password, or None."""

    daemon_threads = True

    def __init__(self, chassis, authdata, address, port, cert, key, uuid, log):
        self.chassis = chassis
        self.authdata = authdata
        self.uuid = uuid
        self.log = log
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        super().__init__((address, port), RedfishHandler)

    def get_request(self):
        sock, client = super().get_request()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), client

    def handle_error(self, request, client_address):
        self.log(f'redfish: connection from {client_address[0]} failed: {sys.exc_info()[1]!r}')


class RedfishHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'kvmha-lab-bmc'
    timeout = CONNECTION_TIMEOUT

    def setup(self):
        self.request.settimeout(self.timeout)
        self.request.do_handshake()  # in this connection's thread, not in the accepting one
        super().setup()

    def do_GET(self):
        self._serve('GET')

    def do_POST(self):
        self._serve('POST')

    def do_PATCH(self):
        self._serve('PATCH')

    def do_PUT(self):
        self._serve('PUT')

    def do_DELETE(self):
        self._serve('DELETE')

    def _serve(self, method):
        body = self._body()
        if body is None:
            return
        path = self.path.split('?', 1)[0].rstrip('/') or '/'
        if path not in PUBLIC and not self._authorized():
            self._send(401, error('NoValidSession', 'wrong user name or password'),
                       {'WWW-Authenticate': 'Basic realm="kvmha lab BMC"'})
            return
        allowed = METHODS.get(path)
        if allowed is None:
            self._send(404, error('ResourceMissingAtURI', f'no resource at {path}'))
        elif method != allowed:
            self._send(405, error('OperationNotAllowed', f'{path} allows {allowed} only'), {'Allow': allowed})
        elif method == 'POST':
            self._reset(body)
        else:
            self._send(200, self._document(path))

    def _document(self, path):
        if path == SYSTEM:
            return system(self.server.chassis.state())
        if path == SYSTEMS:
            return systems()
        if path == SERVICE_ROOT:
            return service_root(self.server.uuid)
        return {'v1': SERVICE_ROOT + '/'}  # /redfish: the protocol versions

    def _body(self):
        """The request's body (b'' if none), read before answering so that the connection stays usable;
        None once the request is refused for a body too large or a Content-Length that is no length."""
        try:
            length = int(self.headers.get('Content-Length') or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(413 if length > MAX_BODY else 400, error('HeaderInvalid', 'Content-Length'))
            return None
        return self.rfile.read(length)

    def _authorized(self):
        scheme, token = ((self.headers.get('Authorization') or '').split(' ', 1) + [''])[:2]
        if scheme.lower() != 'basic':
            return False
        try:
            user, password = base64.b64decode(token, validate=True).decode('utf-8').split(':', 1)
        except ValueError:  # not base64, not UTF-8, or no colon
            return False
        expected = self.server.authdata.get(user)  # re-read: a changed password needs no restart
        return expected is not None and hmac.compare_digest(password.encode('utf-8'), expected.encode('utf-8'))

    def _reset(self, body):
        try:
            reset_type = json.loads(body.decode('utf-8')).get('ResetType')
        except (ValueError, AttributeError) as e:  # not JSON, or JSON that is not an object
            self._send(400, error('MalformedJSON', f'the body is not a JSON object: {e}'))
            return
        if not isinstance(reset_type, str) or reset_type not in RESET_COMMANDS:
            self._send(400, error('ActionParameterValueNotInList',
                                  f'ResetType {reset_type!r} is not one of {", ".join(RESET_COMMANDS)}'))
            return
        outcome = self.server.chassis.command(RESET_COMMANDS[reset_type])
        if outcome == 'ok':
            self._send(204, None)
        elif outcome == 'refused':
            self._send(409, error('ChassisPowerStateOnRequired', f'ResetType {reset_type} needs a running chassis; it is off'))
        else:
            self._send(500, error('InternalError', f'ResetType {reset_type} failed (see the BMC log)'))

    def _send(self, status, document, headers=None):
        data = b'' if document is None else json.dumps(document).encode('utf-8')
        self.send_response(status)
        for name, value in {'OData-Version': '4.0', 'Content-Length': str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        if data:
            self.send_header('Content-Type', 'application/json; charset=utf-8')
        self.end_headers()
        self.wfile.write(data)
        if status >= 400:
            self.server.log(f'redfish: {self.command} {self.path} -> {status}')

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Quiet: the BMC log has the power commands and the refused requests, not every status read."""
