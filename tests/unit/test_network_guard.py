import socket

import pytest

from keel.errors import NetworkBlockedError
from keel.testing.network_guard import is_loopback_address


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        (("127.0.0.1", 80), True),
        (("127.8.9.10", 80), True),
        (("::1", 80, 0, 0), True),
        (("localhost", 80), True),
        (("10.0.0.1", 80), False),
        (("192.168.1.1", 443), False),
        (("8.8.8.8", 53), False),
        (("api.openai.com", 443), False),
        ("/tmp/socket", True),
    ],
)
def test_loopback_classification(address: object, allowed: bool) -> None:
    assert is_loopback_address(address) is allowed


def test_connect_to_public_address_is_blocked() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkBlockedError):
            sock.connect(("93.184.216.34", 80))
        with pytest.raises(NetworkBlockedError):
            sock.connect_ex(("10.1.2.3", 80))
    finally:
        sock.close()


def test_connect_to_loopback_goes_through() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(server.getsockname())
        conn, _ = server.accept()
        conn.close()
    finally:
        client.close()
        server.close()


async def test_asyncio_connections_are_guarded() -> None:
    import asyncio

    with pytest.raises(NetworkBlockedError):
        await asyncio.open_connection("203.0.113.5", 443)
