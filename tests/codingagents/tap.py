"""A byte-for-byte TCP relay on loopback that notes each request's head:
between a CLI and serve, it shows how the CLI frames what it sends
(Qwen Code's Node exporter: chunked, with no Content-Length) while serve
answers it as it would the CLI itself."""

from __future__ import annotations

import socket
import threading


class Relay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.heads: list[str] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._closing = False
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="relay", daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
                for args in ((client, upstream, True), (upstream, client, False)):
                    t = threading.Thread(target=self._pipe, args=args, name="relay-pipe", daemon=True)
                    self._threads.append(t)
                    t.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        seen = b""
        try:
            while chunk := src.recv(65536):
                if requests:
                    seen += chunk
                    while (at := seen.find(b"POST /")) >= 0 and (end := seen.find(b"\r\n\r\n", at)) >= 0:
                        with self._lock:
                            self.heads.append(seen[at:end].decode("latin-1").lower())
                        seen = seen[end + 4 :]
                    seen = seen[-4096:]  # a head cut between two reads is whole again next time
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def requests(self, path: str) -> list[str]:
        with self._lock:
            return [h for h in self.heads if h.startswith(f"post {path} ")]

    def close(self) -> None:
        self._closing = True
        self._threads[0].join(5)
        self._sock.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads[1:])
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in threads:
            t.join(5)
