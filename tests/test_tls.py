"""TLS on the listener, verified by the SDK."""

from __future__ import annotations

import ssl

import pytest
import trustme

import client_sdk

from .conftest import unique
from .support import TEST_CLIENT


@pytest.fixture(scope="module")
def tls_server(start_server, tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    d = tmp_path_factory.mktemp("tls")
    cert.private_key_pem.write_to_path(d / "key.pem")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    ca.cert_pem.write_to_path(d / "ca.pem")
    server = start_server("--tls-cert", str(d / "cert.pem"), "--tls-key", str(d / "key.pem"))
    server.ca_file = str(d / "ca.pem")
    return server


async def test_sdk_talks_tls_with_a_custom_ca(tls_server):
    assert not any("no TLS" in line for line in tls_server.log)
    c = await client_sdk.connect(
        "127.0.0.1", tls_server.port, device={"deviceid": "tls-dev"}, client=TEST_CLIENT, tls=True, cafile=tls_server.ca_file
    )
    try:
        login = unique()
        result = await c.register(login, f"{login}@example.org", "correct horse battery")
        assert result.user_id > 0
        assert c.transport._transport.get_extra_info("ssl_object") is not None
    finally:
        await c.close()


async def test_sdk_refuses_a_certificate_it_does_not_trust(tls_server):
    other_ca = trustme.CA()
    with pytest.raises(ssl.SSLCertVerificationError):
        await client_sdk.connect(
            "127.0.0.1", tls_server.port, device={"deviceid": "x"}, client=TEST_CLIENT, tls=_context(other_ca)
        )


async def test_sdk_refuses_a_certificate_for_another_name(start_server, tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("chat.example.org")
    d = tmp_path_factory.mktemp("tls-name")
    cert.private_key_pem.write_to_path(d / "key.pem")
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    server = start_server("--tls-cert", str(d / "cert.pem"), "--tls-key", str(d / "key.pem"))
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match|not valid"):
        await client_sdk.connect("127.0.0.1", server.port, device={"deviceid": "x"}, client=TEST_CLIENT, tls=_context(ca))


async def test_plaintext_client_gets_nothing_from_a_tls_port(tls_server):
    c = await client_sdk.connect("127.0.0.1", tls_server.port, device={"deviceid": "x"}, client=TEST_CLIENT, timeout=5)
    with pytest.raises((client_sdk.ClientError, ConnectionError)):
        await c.register(unique(), f"{unique()}@example.org", "correct horse battery")
    await c.close()


def test_server_without_tls_warns(server):
    assert any("no TLS: passwords and tokens cross the network in clear" in line for line in server.log)


def _context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
