"""A loopback IB Gateway simulator that speaks the TWS API wire protocol.

Layers, bottom up (sans-I/O: everything but ``server.py`` is pure):

- ``framing``   — the ``API\\0`` handshake, length-prefixed frames, message-id encoding;
- ``requests``  — client → server frames parsed into typed requests (text and protobuf);
- ``responses`` — server → client messages encoded at a negotiated server version;
- ``market``    — seeded random-walk instruments driving L1, depth and tick-by-tick;
- ``matching``  — IB order types, TIFs, algos and icebergs matched against the market;
- ``core``      — the gateway state machine: clients, orders, accounts, faults;
- ``server``    — the thin asyncio server and the control interface.
"""
