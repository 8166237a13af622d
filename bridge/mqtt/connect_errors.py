"""Why a connection attempt failed, said in one line that names the setting to fix, and whether
another attempt could ever succeed.

A network blip (refused, reset, timed out) is ``permanent=False``: the broker may be back in a
moment. A certificate that does not verify, a broker that wants a client certificate, a URL
whose scheme does not match what the port speaks, or a CONNACK refusing the credentials is
``permanent=True``: every retry fails the same way until someone changes a setting.
``MqttClient`` decides what to do with each (docs/guarantees.md, "When the broker cannot be
reached").

Some failures look alike on the wire: Mosquitto answers plain MQTT on a TLS port, and TLS on a
plain port, by resetting the connection. Then :func:`diagnose` asks the port once, with the
other protocol, so the message can say which scheme it speaks instead of "connection reset".
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
from dataclasses import dataclass

from paho.mqtt.reasoncodes import ReasonCode

from mqttbridge.config.schema import BrokerConfig

# How long the one-off probes of diagnose() may take (seconds).
_PROBE_TIMEOUT = 2.0
# How long a broker that accepted the TLS handshake has to send an alert (seconds).
_ALERT_WAIT = 0.5

# OpenSSL's reasons (ssl.SSLError.reason) for a broker that rejected our client certificate, or
# asked for one we did not send.
_CLIENT_CERT_REJECTED = frozenset({
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
})  # fmt: skip
# The port answered something other than TLS.
_NOT_TLS = frozenset({
    "WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
})  # fmt: skip
# Both ends speak TLS but agree on nothing: version, cipher, or (TLS 1.2) a client certificate.
_NO_COMMON_GROUND = frozenset({
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    "TLSV1_UNRECOGNIZED_NAME",
    "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
    "NO_SHARED_CIPHER",
})  # fmt: skip
# X509_V_ERR_* codes of ssl.SSLCertVerificationError.verify_code.
_CERT_HAS_EXPIRED = 10
_HOSTNAME_MISMATCH = (62, 64)  # host name, IP address

# CONNACK reason codes (MQTT 5, 3.2.2.2; paho maps 3.1.1 return codes onto them) that the same
# CONNECT will always get again.
_UNSUPPORTED_PROTOCOL = 132
_CLIENT_ID_NOT_VALID = 133
_BAD_CREDENTIALS = 134
_NOT_AUTHORIZED = 135
_BANNED = 138


@dataclass(frozen=True)
class ConnectFailure:
    """``message`` is the whole line for the log: what happened and, when ``permanent``, which
    setting to change. ``reason`` is what happened alone, for repeats of the same failure."""

    message: str
    reason: str
    permanent: bool


class ClosedBeforeConnack(ConnectionError):
    """The broker ended the connection after CONNECT and before CONNACK; ``cause`` is what the
    socket read raised (a TLS alert, a reset), None for a plain end of stream."""

    def __init__(self, cause: OSError | None) -> None:
        super().__init__(str(cause) if cause is not None else "end of stream")
        self.cause = cause


def diagnose(
    exc: OSError,
    config: BrokerConfig,
    host: str,
    port: int,
    tls_context: ssl.SSLContext | None = None,
) -> ConnectFailure:
    """Explain a failed connection attempt. Blocking: it may probe ``host:port`` once.

    ``tls_context`` is the one the connection used, for ``mqtts://`` and ``wss://``.
    """
    broker = f"{host}:{port}"
    cause = exc.cause if isinstance(exc, ClosedBeforeConnack) else exc
    if (
        isinstance(exc, ClosedBeforeConnack)
        and not isinstance(cause, ssl.SSLError)
        and tls_context is not None
    ):
        # The broker's alert can be lost: when it closes while CONNECT is on its way, the
        # write fails first and the close resets the connection. Ask again, saying nothing.
        cause = _alert_after_handshake(tls_context, host, port) or cause
    if isinstance(cause, ssl.SSLError):
        tls = _tls_failure(cause, config, broker, host, port)
        if tls is not None:
            return tls
    if isinstance(exc, ClosedBeforeConnack):
        if not config.uses_tls and _speaks_tls(host, port):
            return _permanent(
                f"broker {broker} expects TLS on port {port} and closed the connection "
                f"when sent plain MQTT: use {_tls_scheme(config)}:// in broker.url",
                "it expects TLS",
            )
        return _transient(f"broker {broker} closed the connection before CONNACK ({exc})")
    if (
        config.scheme == "mqtts"
        and isinstance(exc, (ConnectionResetError, ssl.SSLEOFError))
        and _speaks_plain_mqtt(host, port)
    ):
        return _permanent(
            f"broker {broker} speaks plain MQTT on port {port}, not TLS, and closed the "
            "connection during the TLS handshake: use mqtt:// in broker.url",
            "it speaks plain MQTT, not TLS",
        )
    return _transient(f"cannot connect to broker {broker}: {exc or type(exc).__name__}")


def refused(
    reason: ReasonCode, config: BrokerConfig, broker: str, client_id: str
) -> ConnectFailure:
    """Explain a CONNACK that refused the connection."""
    said = f"broker {broker} refused the connection: {reason}"
    code = reason.value
    if code == _BAD_CREDENTIALS:
        return _permanent(f"{said}: check broker.username and broker.password", str(reason))
    if code == _NOT_AUTHORIZED:
        who = f"user {config.username!r}" if config.username is not None else "anonymous clients"
        return _permanent(
            f"{said} ({who}, client id {client_id!r}): set broker.username and broker.password "
            "to an account the broker allows",
            str(reason),
        )
    if code == _CLIENT_ID_NOT_VALID:
        return _permanent(f"{said} ({client_id!r}): set another broker.client_id", str(reason))
    if code == _UNSUPPORTED_PROTOCOL:
        fix = "set broker.protocol: '3.1.1'" if config.protocol == "5" else "it needs MQTT 5"
        return _permanent(f"{said} (MQTT {config.protocol}): {fix}", str(reason))
    if code == _BANNED:
        return _permanent(f"{said} (client id {client_id!r})", str(reason))
    return _transient(f"{said} (client id {client_id!r})")


def _tls_failure(
    exc: ssl.SSLError, config: BrokerConfig, broker: str, host: str, port: int
) -> ConnectFailure | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _unverified(exc, config, broker, host)
    reason = exc.reason or ""
    alert = _reason_text(exc)
    cert_file = config.tls.cert_file
    if reason in _CLIENT_CERT_REJECTED:
        if cert_file is None:
            return _permanent(
                f"broker {broker} requires a client certificate ({alert}): set "
                "broker.tls.cert_file and broker.tls.key_file",
                alert,
            )
        return _permanent(
            f"broker {broker} rejected the client certificate in broker.tls.cert_file "
            f"({cert_file!r}): {alert}; use one signed by a CA the broker trusts",
            alert,
        )
    if reason in _NOT_TLS:
        plain = "ws" if config.scheme == "wss" else "mqtt"
        return _permanent(
            f"broker {broker} does not speak TLS on port {port} ({alert}): use {plain}:// "
            "in broker.url",
            alert,
        )
    if reason in _NO_COMMON_GROUND:
        hint = "" if cert_file else ", or the broker wants a client certificate (broker.tls)"
        return _permanent(
            f"TLS handshake with broker {broker} failed ({alert}): no TLS version or cipher "
            f"in common{hint}",
            alert,
        )
    return None


def _unverified(
    exc: ssl.SSLCertVerificationError, config: BrokerConfig, broker: str, host: str
) -> ConnectFailure:
    what = exc.verify_message or _reason_text(exc)
    if exc.verify_code in _HOSTNAME_MISMATCH:
        return _permanent(
            f"the certificate of broker {broker} is not valid for the host in broker.url, "
            f"{host!r}: put a name the certificate lists in broker.url, or have the broker's "
            "certificate reissued for it",
            what,
        )
    if exc.verify_code == _CERT_HAS_EXPIRED:
        return _permanent(
            f"the certificate of broker {broker} has expired: the broker must renew it", what
        )
    ca_file = config.tls.ca_file
    trusted = f"{ca_file!r}" if ca_file is not None else "unset: the system CA store"
    return _permanent(
        f"cannot verify the certificate of broker {broker} ({what}): set broker.tls.ca_file "
        f"to the CA certificate that signed it (now {trusted})",
        what,
    )


def _speaks_tls(host: str, port: int) -> bool:
    """Whether ``host:port`` completes (or fails with an alert) a TLS handshake."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=_PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        # An alert (no client certificate, say) is TLS too; bytes that are not TLS are not.
        return not isinstance(exc, ssl.SSLEOFError) and exc.reason not in _NOT_TLS
    except OSError:
        return False


def _alert_after_handshake(context: ssl.SSLContext, host: str, port: int) -> ssl.SSLError | None:
    """The TLS error a handshake with ``context`` ends in, or that the broker sends right after
    it (TLS 1.3 checks the client certificate then); None if the broker waits for CONNECT."""
    try:
        with (
            socket.create_connection((host, port), timeout=_PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.settimeout(_ALERT_WAIT)
            sock.recv(1)
    except ssl.SSLError as exc:
        return exc
    except OSError:
        pass
    return None


def _speaks_plain_mqtt(host: str, port: int) -> bool:
    """Whether ``host:port`` answers an MQTT 3.1.1 CONNECT with a CONNACK (accepted or not)."""
    client_id = f"mqttbridge-probe-{secrets.token_hex(4)}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x05" + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT) as sock:
            sock.sendall(bytes([0x10, len(body)]) + body)
            first = sock.recv(1)
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return first == b"\x20"


def _reason_text(exc: ssl.SSLError) -> str:
    # "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)"
    # -> "tlsv13 alert certificate required"
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if text.startswith("["):
        text = text.partition("] ")[2] or text
    return text.rsplit(" (_ssl.c:", 1)[0]


def _tls_scheme(config: BrokerConfig) -> str:
    return "wss" if config.scheme == "ws" else "mqtts"


def _permanent(message: str, reason: str) -> ConnectFailure:
    return ConnectFailure(message, reason, permanent=True)


def _transient(message: str) -> ConnectFailure:
    return ConnectFailure(message, message, permanent=False)
