"""The viewer's side of the view-only VNC proxy: the panel's own handshake in each RFB
dialect a client may answer with, then only the messages a viewer needs."""

from __future__ import annotations

import struct

import pytest

from vms.rfb import VERSION, ProtocolError, ViewerSide, vnc_auth_response

SERVER_INIT = struct.pack(">HH16sI", 720, 400, bytes(16), 4) + b"test"
PIXEL_FORMAT = struct.pack(">Bxxx16s", 0, bytes(16))
ENCODINGS = struct.pack(">BxH", 2, 2) + struct.pack(">ii", 0, -223)
UPDATE = struct.pack(">BBHHHH", 3, 1, 0, 0, 720, 400)
KEY = struct.pack(">BBxxI", 4, 1, 0x61)
POINTER = struct.pack(">BBHH", 5, 1, 10, 10)
CUT = struct.pack(">Bxxxi", 6, 5) + b"hello"
EXTENDED_CUT = struct.pack(">Bxxxi", 6, -8) + b"\x00" * 8


def handshake(minor: int) -> tuple[ViewerSide, bytes]:
    """A viewer that went through the handshake of RFB 3.<minor>; what it was told."""
    side = ViewerSide(SERVER_INIT)
    told = side.feed(b"RFB 003.%03d\n" % minor)[0]
    if minor != 3:
        told += side.feed(b"\x01")[0]  # security type None
    told += side.feed(b"\x01")[0]  # ClientInit
    return side, told


@pytest.mark.parametrize(
    ("minor", "expected"),
    [
        # 3.3: the server names the security type (None); no result follows.
        (3, struct.pack(">I", 1) + SERVER_INIT),
        # 3.7: one type offered (None); no SecurityResult for None.
        (7, b"\x01\x01" + SERVER_INIT),
        # 3.8: one type offered (None); then SecurityResult OK.
        (8, b"\x01\x01" + struct.pack(">I", 0) + SERVER_INIT),
    ],
)
def test_it_answers_each_rfb_dialect_with_its_own_handshake(minor, expected):
    side, told = handshake(minor)
    assert VERSION == b"RFB 003.008\n"
    assert told == expected
    assert side.stage == "messages"


@pytest.mark.parametrize("minor", [3, 7, 8])
def test_it_forwards_what_a_viewer_needs_and_drops_all_input(minor):
    side, _ = handshake(minor)
    stream = PIXEL_FORMAT + ENCODINGS + KEY + POINTER + UPDATE + CUT + EXTENDED_CUT + UPDATE
    forwarded = b""
    for i in range(0, len(stream), 3):  # in pieces, as frames may split it anywhere
        to_client, to_server = side.feed(stream[i : i + 3])
        assert to_client == b""
        forwarded += to_server
    assert forwarded == PIXEL_FORMAT + ENCODINGS + UPDATE + UPDATE
    assert side.dropped == 4


def test_it_never_lets_the_client_move_the_handshake_out_of_step():
    # A 3.3 client's ClientInit followed by a byte meant to pass as the first message:
    # the panel reads it as a message of type 1, which a viewer may not send.
    side = ViewerSide(SERVER_INIT)
    side.feed(b"RFB 003.003\n")
    side.feed(b"\x01")
    with pytest.raises(ProtocolError):
        side.feed(b"\x01" + KEY)


def test_it_withholds_encodings_whose_features_need_input_or_hand_out_the_clipboard():
    side, _ = handshake(8)
    asked = [0, 7, -223, -258, -259, -312, -313, -309, -1063131698, -239]
    message = struct.pack(f">BxH{len(asked)}i", 2, len(asked), *asked)
    _, forwarded = side.feed(message)
    assert forwarded == struct.pack(">BxH4i", 2, 4, 0, 7, -223, -239)


@pytest.mark.parametrize(
    "message",
    [
        b"\x07\x00\x00\x00",  # unknown type
        b"\xff\x00\x00\x01" + bytes(8),  # QEMU extended key event
        b"\x96" + bytes(9),  # EnableContinuousUpdates
        b"\xf8" + bytes(8),  # Fence
        b"\xfa\x00\x01\x02",  # XVP
        b"\xfb" + bytes(7),  # SetDesktopSize
        struct.pack(">Bxxxi", 6, 1 << 30),  # a clipboard of a gigabyte
    ],
)
def test_it_ends_the_session_on_a_message_it_cannot_vouch_for(message):
    side, _ = handshake(8)
    with pytest.raises(ProtocolError):
        side.feed(message)


@pytest.mark.parametrize(
    "answer",
    [b"RFB 003.005\n", b"RFB 003.889\n", b"RFB 004.001\n", b"HTTP/1.1 200\n"],
)
def test_it_refuses_a_version_it_did_not_offer(answer):
    with pytest.raises(ProtocolError):
        ViewerSide(SERVER_INIT).feed(answer)


@pytest.mark.parametrize("choice", [b"\x00", b"\x02", b"\x10"])
def test_it_refuses_a_security_type_it_did_not_offer(choice):
    side = ViewerSide(SERVER_INIT)
    side.feed(b"RFB 003.008\n")
    with pytest.raises(ProtocolError):
        side.feed(choice)


def test_it_answers_a_vnc_challenge_as_rfb_defines_it():
    # DES with the password's bytes bit-reversed as the key ("password" -> 0e86ceceeef64e26);
    # the expected answer is OpenSSL's: openssl enc -des-ecb -K 0e86ceceeef64e26 -nopad.
    challenge = bytes(range(16))
    assert vnc_auth_response("password", challenge).hex() == "b866924125c8eebb9debc1db61c538e2"
    # Longer passwords count by their first 8 bytes, shorter ones are padded with zeros.
    assert vnc_auth_response("password-and-more", challenge) == vnc_auth_response(
        "password", challenge
    )
    assert vnc_auth_response("pw", challenge) == vnc_auth_response("pw\0\0\0\0\0\0", challenge)
