"""Every use of paho-mqtt's private API, in one place (paho-mqtt 2.1, pinned in pyproject.toml).

paho's public API has no hook for buffered reads, for calling ``on_message`` without its
per-filter matcher, for the TLS context it built, for its ping bookkeeping or for setting the
in-flight limit once connected. Each function names the attribute it touches, so a paho
upgrade is checked against this module alone.
"""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as paho

__all__ = ["BufferedClient", "keep_ping_pending", "raw_topic", "set_max_inflight", "ssl_context"]

logger = logging.getLogger("mqttbridge.mqtt.client")

_READ_CHUNK = 65536


class BufferedClient(paho.Client):
    """paho's client with reads served from a 64 KiB buffer instead of one syscall per field."""

    _rbuf: bytes = b""
    _rpos: int = 0
    # What the last failed read raised: paho only logs it, and a TLS alert is the one place
    # that says why the broker closed (e.g. it wanted a client certificate).
    read_error: OSError | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        pos = self._rpos
        buf = self._rbuf
        if pos >= len(buf):
            try:
                buf = super()._sock_recv(_READ_CHUNK)
            except BlockingIOError:
                raise  # nothing to read yet
            except OSError as exc:
                self.read_error = exc
                raise
            if not buf:
                return b""
            self._rbuf = buf
            pos = 0
        end = pos + bufsize
        self._rpos = end
        return buf[pos:end]

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        # paho walks its per-filter callback matcher (message_callback_add) for every message;
        # the bridge registers none and routes itself. Calling on_message directly is +24%
        # QoS 0 throughput (docs/benchmarks.md).
        on_message = self._on_message
        if on_message is None:
            return
        try:
            on_message(self, self._userdata, message)
        except Exception:
            logger.exception("error handling a message on %r", raw_topic(message))

    def buffered(self) -> bool:
        return self._rpos < len(self._rbuf)

    def reset_buffer(self) -> None:
        self._rbuf = b""
        self._rpos = 0
        self.read_error = None


def raw_topic(message: paho.MQTTMessage) -> bytes:
    """The topic as received: for a topic that is not valid UTF-8 (``message.topic`` raises)."""
    topic: bytes = message._topic
    return topic


def ssl_context(client: paho.Client) -> ssl.SSLContext | None:
    """The TLS context ``tls_set`` built, to diagnose a failed handshake with the same one."""
    context: ssl.SSLContext | None = client._ssl_context
    return context


def keep_ping_pending(client: paho.Client) -> None:
    """Forget that a PINGREQ awaits its PINGRESP, so paho does not close the link for it."""
    client._ping_t = 0


def set_max_inflight(client: paho.Client, limit: int) -> None:
    """Set the in-flight limit on a connected client (paho's setter refuses one); 0: none."""
    client._max_inflight_messages = limit
