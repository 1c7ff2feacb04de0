"""The recorder in front of an upstream that closes a kept-alive connection after an answer (uvicorn does after a
500: real vLLM's control routes were seen doing so): the next request, which never reached the server, is sent again
on a fresh connection, answered and recorded, instead of answered 502 and lost."""

import socket
import struct
import threading

import httpx

from harness.recording.format import Cassette
from harness.recording.proxy import Recorder, create_proxy_app
from harness.serve import AppThread


class ResettingUpstream:
    """Answers the first request of each connection (keep-alive), then resets that connection when a second request
    arrives on it, before reading it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.answered = 0
        self.resets = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return conn.close()
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += conn.recv(65536)
        self.answered += 1
        body = b'{"status":"paused"}'
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        conn.recv(1)  # the next request on this connection: reset it unread
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.resets += 1
        conn.close()


def test_a_request_on_a_connection_the_upstream_closed_is_sent_again_and_recorded(tmp_path):
    upstream = ResettingUpstream()
    path = tmp_path / "stale.yaml"
    rec = Recorder(path, "all")
    with AppThread(create_proxy_app(f"http://127.0.0.1:{upstream.port}", rec)) as p:
        with httpx.Client(base_url=f"http://127.0.0.1:{p.port}") as http:
            statuses = [http.post(f"/pause?mode=keep&n={k}").status_code for k in range(3)]
    assert statuses == [200, 200, 200]
    assert upstream.answered == 3 and upstream.resets >= 2
    assert [i.uri.rsplit("n=", 1)[1] for i in Cassette.load(path).interactions] == ["0", "1", "2"]
