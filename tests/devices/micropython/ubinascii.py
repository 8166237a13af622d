from binascii import hexlify  # noqa: F401
