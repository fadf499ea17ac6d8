"""The web server's listening socket, as supervisord hands it over (uvicorn --fd 0):
connections accepted on it must send small answers at once (TCP_NODELAY), not wait
40 ms for the client's delayed ACK between the headers and the body."""

from __future__ import annotations

import socket

from panel.asgi import no_delay_on_passed_socket


def accepted_no_delay(listener: socket.socket) -> int:
    with socket.create_connection(listener.getsockname()) as client:
        conn, _ = listener.accept()
        with conn:
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_connections_accepted_on_the_passed_socket_do_not_wait_for_acks():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert accepted_no_delay(listener) == 0  # what uvicorn --fd leaves

        assert no_delay_on_passed_socket(
            ["uvicorn", "panel.asgi:application", "--fd", str(listener.fileno())]
        )

        assert accepted_no_delay(listener) == 1
        # The listener itself stays open and listening for the server.
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_it_leaves_other_sockets_and_other_ways_of_starting_alone(tmp_path):
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "web.sock"))
        unix.listen()
        assert not no_delay_on_passed_socket(["uvicorn", f"--fd={unix.fileno()}"])
    assert not no_delay_on_passed_socket(["uvicorn", "panel.asgi:application", "--port", "8000"])
    assert not no_delay_on_passed_socket(["pytest", "--fd"])
